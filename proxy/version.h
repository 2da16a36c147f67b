/* version.h -- egressd's version, for --version and egressd_build_info */
#ifndef EGRESSD_VERSION_H
#define EGRESSD_VERSION_H

#define EGRESSD_VERSION "0.1.0"

#endif
