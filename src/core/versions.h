/* Versions of fedhpc and of the libraries it is linked with, for `fedhpc info`
 * and for the attributes of every output file. */
#ifndef FH_VERSIONS_H
#define FH_VERSIONS_H

#include <stddef.h>

/* "fedhpc 0.1.0 (rev abc); MPI: Open MPI v4.1.4; HDF5 1.10.8 (parallel); ..." */
void fh_versions_string(char *buf, size_t len);
/* One "name: version" per line. */
void fh_versions_print(void);

#endif
