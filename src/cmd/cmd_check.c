/* fedhpc check RUN: verifies RUN/checkpoint.h5 (or a checkpoint file) without
 * resuming: every dataset against its checksum (fl/checkpoint.c), and the
 * global model for non-finite values. Rank 0 reads; exit 0, or 4 naming the
 * damaged object. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "fl/algorithm.h"
#include "fl/checkpoint.h"
#include "io/h5util.h"

typedef struct {
  const char *path;
  int checked, unchecked, rc;
} check_ctx;

/* One dataset: its rows (or the whole of it) hashed as the writer did. */
static int check_dataset(hid_t d, const char *name, check_ctx *c) {
  if (H5Aexists(d, "checksum") <= 0) {
    c->unchecked++;
    return 0;
  }
  const unsigned long long want = (unsigned long long)fh_h5_attr_int_get(d, "checksum", 0);
  const size_t row_bytes = (size_t)fh_h5_attr_int_get(d, "checksum_row_bytes", 0);
  hid_t t = H5Dget_type(d), fsp = H5Dget_space(d);
  const size_t esize = H5Tget_size(t);
  int nd = H5Sget_simple_extent_ndims(fsp);
  hsize_t dims[8] = {0};
  H5Sget_simple_extent_dims(fsp, dims, NULL);
  size_t per_row = 1;
  for (int i = 1; i < nd; i++) per_row *= (size_t)dims[i];
  const size_t rows = nd > 0 ? (size_t)dims[0] : 1, rb = per_row * esize;
  unsigned long long sum = 0;
  int bad = 0;
  if (row_bytes == 0) { /* written whole */
    char *buf = fh_malloc(rows * rb + 1);
    bad = rows > 0 && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0;
    sum = fh_checkpoint_row_hash(buf, rows * rb, 0);
    free(buf);
  } else {
    const size_t batch = rb > 0 && (64u << 20) / rb > 0 ? (64u << 20) / rb : 1;
    char *buf = fh_malloc(batch * rb + 1);
    for (size_t r0 = 0; r0 < rows && !bad; r0 += batch) {
      hsize_t cnt[8], start[8] = {0};
      for (int i = 0; i < nd; i++) cnt[i] = dims[i];
      start[0] = r0;
      cnt[0] = rows - r0 < batch ? rows - r0 : batch;
      H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, cnt, NULL);
      hid_t msp = H5Screate_simple(nd, cnt, NULL);
      bad = H5Dread(d, t, msp, fsp, H5P_DEFAULT, buf) < 0;
      H5Sclose(msp);
      /* rows of row_bytes: a first-axis entry, or a finer block of it (a
       * profile dataset [R, P, ...] hashes its blocks [r, p, ...]) */
      const size_t per = row_bytes < rb && rb % row_bytes == 0 ? rb / row_bytes : 1, hb = rb / per;
      for (size_t r = 0; r < cnt[0] * per && !bad; r++) sum += fh_checkpoint_row_hash(buf + r * hb, hb, r0 * per + r);
    }
    free(buf);
  }
  H5Sclose(fsp);
  H5Tclose(t);
  if (bad) return FH_FAIL(FH_ERR_DATA, "%s: cannot read /%s: the file is damaged", c->path, name);
  if (sum != want)
    return FH_FAIL(FH_ERR_DATA, "%s: /%s is damaged (its checksum does not match its data)", c->path, name);
  c->checked++;
  return 0;
}

static herr_t visit(hid_t root, const char *name, const H5O_info_t *info, void *data) {
  check_ctx *c = data;
  if (info->type != H5O_TYPE_DATASET || c->rc) return 0;
  hid_t d = H5Dopen2(root, name, H5P_DEFAULT);
  if (d < 0) {
    c->rc = FH_FAIL(FH_ERR_DATA, "%s: cannot open /%s: the file is damaged", c->path, name);
    return 1;
  }
  c->rc = check_dataset(d, name, c);
  H5Dclose(d);
  return c->rc ? 1 : 0;
}

static int check_file(const char *path) {
  fh_h5_quiet q;
  fh_h5_quiet_begin(&q);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  int rc = 0;
  if (f < 0) {
    char why[256];
    rc = FH_FAIL(FH_ERR_DATA, "%s: cannot open the checkpoint (%s): the file is damaged or not HDF5", path,
                 fh_h5_reason(why));
    fh_h5_quiet_end(&q);
    return rc;
  }
  char alg[128] = "";
  long long round = fh_h5_attr_int_get(f, "round", -1), K = fh_h5_attr_int_get(f, "num_clients", -1), R = fh_h5_attr_int_get(f, "rounds", -1);
  hid_t a = H5Aexists(f, "algorithm") > 0 ? H5Aopen(f, "algorithm", H5P_DEFAULT) : -1;
  if (a >= 0) {
    hid_t t = H5Aget_type(a);
    if (H5Tget_size(t) < sizeof alg) H5Aread(a, t, alg);
    H5Tclose(t);
    H5Aclose(a);
  }
  if (round < 0 || !alg[0]) rc = FH_FAIL(FH_ERR_DATA, "%s: not a fedhpc checkpoint", path);
  check_ctx c = {path, 0, 0, 0};
  if (rc == 0) {
    if (H5Ovisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, visit, &c) < 0 && c.rc == 0)
      c.rc = FH_FAIL(FH_ERR_DATA, "%s: cannot list the objects: the file is damaged", path);
    rc = c.rc;
  }
  const fh_algorithm *alg_def = alg[0] ? fh_algorithm_find(alg) : NULL;
  if (rc == 0 && alg_def && !(alg_def->flags & (FH_ALG_NO_GLOBAL | FH_ALG_NO_GLOBAL_MODEL))) {
    hid_t d = H5Dopen2(f, "global", H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    float *g = n > 0 ? fh_malloc((size_t)n * sizeof(float)) : NULL;
    if (n < 0 || (g && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, g) < 0))
      rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read /global", path);
    for (hssize_t i = 0; rc == 0 && i < n; i++)
      if (!isfinite(g[i]))
        rc = FH_FAIL(FH_ERR_DATA, "%s: /global[%lld] = %g: the global model is not finite", path, (long long)i,
                     (double)g[i]);
    free(g);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
  }
  H5Fclose(f);
  fh_h5_quiet_end(&q);
  if (rc == 0)
    fh_info("%s: intact: %s after round %lld of %lld, %lld clients; %d datasets match their checksums%s", path, alg,
            round, R, K, c.checked, c.unchecked ? " (some have none: written by an older fedhpc)" : "");
  return rc;
}

int fh_cmd_check(int argc, char **argv) {
  if (argc != 1 || argv[0][0] == '-')
    return FH_FAIL(FH_ERR_USAGE, "usage: fedhpc check RUN_DIR (or a checkpoint file)");
  char path[4200];
  struct stat st;
  if (stat(argv[0], &st) == 0 && S_ISDIR(st.st_mode))
    snprintf(path, sizeof path, "%s/checkpoint.h5", argv[0]);
  else
    snprintf(path, sizeof path, "%s", argv[0]);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int rc = 0;
  if (rank == 0) {
    if (stat(path, &st) != 0)
      rc = FH_FAIL(FH_ERR_USAGE, "%s: no such checkpoint", path);
    else
      rc = check_file(path);
  }
  return fh_error_agree(MPI_COMM_WORLD, rc);
}
