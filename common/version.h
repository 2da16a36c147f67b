/* version.h -- egressd's version: the one place it is written (the binary
 * prints it and egressd_build_info carries it, the Makefile puts it into the installed man page) */
#ifndef EGRESSD_VERSION_H
#define EGRESSD_VERSION_H

#define EGRESSD_VERSION "0.1.0"

#endif
