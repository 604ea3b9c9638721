/* An external pool of generated samples with labels (fedgc.pool), used in
 * place of the built-in generator: e.g. images from a diffusion model. */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/generator.h"
#include "io/h5util.h"

static int read_pool(hid_t f, const char *path, const fh_dataset *ds, float **x, int32_t **y, int64_t *n) {
  hid_t dx = H5Dopen2(f, "/x", H5P_DEFAULT), dy = H5Dopen2(f, "/y", H5P_DEFAULT);
  hid_t sx = dx >= 0 ? H5Dget_space(dx) : -1, sy = dy >= 0 ? H5Dget_space(dy) : -1;
  int rc = 0;
  hsize_t dims[8] = {0}, ydims[2] = {0};
  int nd = 0;
  if (dx < 0 || dy < 0)
    rc = FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: no dataset %s; a pool holds /x [N, ...] and /y [N] "
                              "(docs/dataset-format.md)", path, dx < 0 ? "/x" : "/y");
  if (rc == 0) {
    nd = H5Sget_simple_extent_ndims(sx);
    if (nd < 2 || nd > 4 || H5Sget_simple_extent_ndims(sy) != 1)
      rc = FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: /x must be [N, D], [N, H, W] or [N, C, H, W] and /y [N]", path);
  }
  if (rc == 0) {
    H5Sget_simple_extent_dims(sx, dims, NULL);
    H5Sget_simple_extent_dims(sy, ydims, NULL);
    hsize_t per = 1;
    for (int i = 1; i < nd; i++) per *= dims[i];
    if (per != (hsize_t)ds->dim)
      rc = FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: samples of %llu values, but %s has samples of %d x %d x %d = %d",
                   path, (unsigned long long)per, ds->name, ds->c, ds->h, ds->w, ds->dim);
    else if (ydims[0] != dims[0])
      rc = FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: /x has %llu rows but /y %llu", path, (unsigned long long)dims[0],
                   (unsigned long long)ydims[0]);
    else if (dims[0] == 0)
      rc = FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s holds no sample", path);
  }
  if (rc == 0) {
    *n = (int64_t)dims[0];
    *x = fh_malloc((size_t)dims[0] * (size_t)ds->dim * sizeof(float));
    *y = fh_malloc((size_t)dims[0] * sizeof(int32_t));
    if (H5Dread(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *x) < 0 ||
        H5Dread(dy, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, *y) < 0) {
      char why[256];
      rc = FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: cannot read /x or /y (%s)", path, fh_h5_reason(why));
    }
  }
  for (int64_t i = 0; rc == 0 && i < *n; i++)
    if ((*y)[i] < 0 || (*y)[i] >= ds->num_classes)
      rc = FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: /y[%lld] = %d is not a class of %s (0..%d)", path, (long long)i,
                   (*y)[i], ds->name, ds->num_classes - 1);
  if (sx >= 0) H5Sclose(sx);
  if (sy >= 0) H5Sclose(sy);
  if (dx >= 0) H5Dclose(dx);
  if (dy >= 0) H5Dclose(dy);
  return rc;
}

int fh_generator_pool_load(const char *path, const fh_dataset *ds, float **x, int32_t **y, int64_t *n) {
  *x = NULL, *y = NULL, *n = 0;
  fh_h5_quiet q;
  fh_h5_quiet_begin(&q);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  int rc = 0;
  if (f < 0) {
    char why[256];
    rc = FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: cannot open it as HDF5 (%s); give a pool file "
                              "(docs/dataset-format.md) or leave fedgc.pool empty for the built-in generator",
                 path, fh_h5_reason(why));
  } else {
    rc = read_pool(f, path, ds, x, y, n);
    H5Fclose(f);
  }
  fh_h5_quiet_end(&q);
  if (rc) {
    free(*x), free(*y);
    *x = NULL, *y = NULL, *n = 0;
    return rc;
  }
  /* the data set's normalisation, channel by channel */
  const size_t plane = (size_t)ds->h * (size_t)ds->w;
  for (int64_t r = 0; r < *n; r++)
    for (int ch = 0; ch < ds->c; ch++) {
      float *p = *x + (size_t)r * ds->dim + (size_t)ch * plane;
      for (size_t i = 0; i < plane; i++) p[i] = (p[i] / ds->value_scale - ds->mean[ch]) / ds->std[ch];
    }
  return 0;
}
