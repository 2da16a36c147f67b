/* selfguard.c -- egressd's own process made unreadable to others: not
 * dumpable, and its environment block (/proc/<pid>/environ) wiped.
 *
 * The kernel shows /proc/<pid>/environ from the strings execve placed on the
 * initial stack (mm->env_start..env_end); unsetenv() only drops a pointer
 * from environ, the bytes stay. So the strings are copied out, environ is
 * pointed at the copy, and the originals are overwritten in place. */
#include "selfguard.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>

extern char **environ;

/* One anonymous mapping for the pointer array and the strings. */
static void *map_private(size_t len)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		abort();
	madvise(m, len, MADV_DONTDUMP); /* best effort: never in a core file */
	mlock(m, len);                  /* best effort: never swapped out */
	return m;
}

void selfguard_init(void)
{
	size_t n = 0, bytes = 0, off;
	char **copy, *strs;

	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (!environ)
		return;
	for (char **e = environ; *e; e++) {
		n++;
		bytes += strlen(*e) + 1;
	}
	copy = map_private((n + 1) * sizeof(char *) + bytes);
	strs = (char *)(copy + n + 1);
	off = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(environ[i]) + 1;

		memcpy(strs + off, environ[i], l);
		copy[i] = strs + off;
		off += l;
	}
	copy[n] = NULL;
	for (size_t i = 0; i < n; i++) {
		char *s = environ[i];

		/* volatile stores: the compiler may not drop a wipe of memory
		 * it believes nobody reads again */
		for (volatile char *v = s; *v; v++)
			*v = '\0';
	}
	environ = copy;
}
