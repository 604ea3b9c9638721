#include "core/versions.h"

#include <cblas.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "core/profile.h"

#ifdef FEDHPC_HAVE_DNNL
#include <dnnl.h>
#endif

#define NROWS 7

static void mpi_version(char *buf, size_t len) {
  char lib[MPI_MAX_LIBRARY_VERSION_STRING];
  int n = 0;
  MPI_Get_library_version(lib, &n);
  char *nl = strchr(lib, ','); /* "Open MPI v4.1.4, package: ..." */
  if (nl) *nl = '\0';
  snprintf(buf, len, "%s", lib);
}

static void collect(char rows[NROWS][2][320]) {
  unsigned maj, min, rel;
  H5get_libversion(&maj, &min, &rel);
  snprintf(rows[0][0], 320, "fedhpc");
  snprintf(rows[0][1], 320, "%s (revision %s)", FEDHPC_VERSION, FEDHPC_GIT_REV);
  snprintf(rows[1][0], 320, "MPI");
  mpi_version(rows[1][1], 320);
  snprintf(rows[2][0], 320, "HDF5");
#ifdef H5_HAVE_PARALLEL
  snprintf(rows[2][1], 320, "%u.%u.%u (parallel)", maj, min, rel);
#else
  snprintf(rows[2][1], 320, "%u.%u.%u (serial)", maj, min, rel);
#endif
  snprintf(rows[3][0], 320, "OpenBLAS");
  snprintf(rows[3][1], 320, "%s", openblas_get_config());
  snprintf(rows[4][0], 320, "ScaLAPACK");
  snprintf(rows[4][1], 320, "%s", FEDHPC_SCALAPACK_VERSION);
  snprintf(rows[5][0], 320, "PAPI");
  snprintf(rows[5][1], 320, "%s", fh_papi_version());
  snprintf(rows[6][0], 320, "oneDNN");
#ifdef FEDHPC_HAVE_DNNL
  const dnnl_version_t *v = dnnl_version();
  snprintf(rows[6][1], 320, "%d.%d.%d (convolutions, model.conv)", v->major, v->minor, v->patch);
#else
  snprintf(rows[6][1], 320, "not built in (portable convolutions only)");
#endif
}

void fh_versions_string(char *buf, size_t len) {
  char rows[NROWS][2][320];
  collect(rows);
  buf[0] = '\0';
  for (int i = 0; i < NROWS; i++) {
    size_t used = strlen(buf);
    snprintf(buf + used, len - used, "%s%s: %s", i ? "; " : "", rows[i][0], rows[i][1]);
  }
}

void fh_versions_print(void) {
  char rows[NROWS][2][320];
  collect(rows);
  for (int i = 0; i < NROWS; i++) printf("  %-10s %s\n", rows[i][0], rows[i][1]);
}
