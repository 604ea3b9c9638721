/* An external pool of generated samples with labels (fedgc.pool), used in
 * place of the built-in generator: e.g. images from a diffusion model. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/generator.h"
#include "io/h5util.h"

/* The pool's sample shape against the data set's C x H x W: flat [N, D] with
 * D = C H W, or (nchw) [N, H, W] for one channel and [N, C, H, W], or (nhwc)
 * [N, H, W, C], which is transposed after reading. Anything else is refused
 * with both shapes named, and the key that would read it where one would. */
static int check_layout(const char *path, const fh_dataset *ds, int nd, const hsize_t *dims, int nhwc) {
  char got[96];
  int at = snprintf(got, sizeof got, "[N");
  for (int i = 1; i < nd && at < (int)sizeof got; i++) at += snprintf(got + at, sizeof got - at, ", %llu", (unsigned long long)dims[i]);
  if (at < (int)sizeof got) snprintf(got + at, sizeof got - at, "]");
  const hsize_t c = (hsize_t)ds->c, h = (hsize_t)ds->h, w = (hsize_t)ds->w;
  const int is_chw = nd == 4 && dims[1] == c && dims[2] == h && dims[3] == w;
  const int is_hwc = nd == 4 && dims[1] == h && dims[2] == w && dims[3] == c;
  if (nhwc) {
    if (is_hwc) return 0;
    return FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: /x is %s but fedgc.pool_layout = nhwc needs [N, %d, %d, %d] for "
                                "the %dx%dx%d samples of %s",
                   path, got, ds->h, ds->w, ds->c, ds->c, ds->h, ds->w, ds->name);
  }
  if (nd == 2 || is_chw || (nd == 3 && c == 1 && dims[1] == h && dims[2] == w)) return 0;
  if (is_hwc)
    return FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: /x is %s, channels last (NHWC), but %s has samples of %dx%dx%d "
                                "(C, H, W); set fedgc.pool_layout = nhwc to read it channels last",
                   path, got, ds->name, ds->c, ds->h, ds->w);
  return FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: /x is %s, which is not the %dx%dx%d samples of %s ([N, %d, %d, %d] "
                              "or flat [N, %d])",
                 path, got, ds->c, ds->h, ds->w, ds->name, ds->c, ds->h, ds->w, ds->dim);
}

static int read_pool(hid_t f, const char *path, const fh_dataset *ds, int nhwc, float **x, int32_t **y,
                     int64_t *n) {
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
    else if ((rc = check_layout(path, ds, nd, dims, nhwc)) != 0)
      ;
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

int fh_generator_pool_load(const char *path, const fh_dataset *ds, int nhwc, float **x, int32_t **y, int64_t *n) {
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
    rc = read_pool(f, path, ds, nhwc, x, y, n);
    H5Fclose(f);
  }
  fh_h5_quiet_end(&q);
  if (rc) {
    free(*x), free(*y);
    *x = NULL, *y = NULL, *n = 0;
    return rc;
  }
  const size_t plane = (size_t)ds->h * (size_t)ds->w;
  if (nhwc && ds->c > 1) { /* [H, W, C] -> [C, H, W], row by row */
    float *tmp = fh_malloc((size_t)ds->dim * sizeof(float));
    for (int64_t r = 0; r < *n; r++) {
      float *p = *x + (size_t)r * ds->dim;
      for (size_t i = 0; i < plane; i++)
        for (int ch = 0; ch < ds->c; ch++) tmp[(size_t)ch * plane + i] = p[i * (size_t)ds->c + (size_t)ch];
      memcpy(p, tmp, (size_t)ds->dim * sizeof(float));
    }
    free(tmp);
  }
  /* the data set's normalisation, channel by channel */
  for (int64_t r = 0; r < *n; r++)
    for (int ch = 0; ch < ds->c; ch++) {
      float *p = *x + (size_t)r * ds->dim + (size_t)ch * plane;
      for (size_t i = 0; i < plane; i++) p[i] = (p[i] / ds->value_scale - ds->mean[ch]) / ds->std[ch];
    }
  return 0;
}

/* A one-dimensional integer dataset name [n] of the open file f into *v (the
 * caller's to free), or FH_ERR_DATA naming file (what: "fedgc.pool = X" or
 * "data.path = X") and dataset. Values must be >= 0. */
static int read_ids(hid_t f, const char *what, const char *name, int64_t n, int32_t **v) {
  *v = NULL;
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t sp = d >= 0 ? H5Dget_space(d) : -1, ty = d >= 0 ? H5Dget_type(d) : -1;
  hsize_t dims[2] = {0};
  int rc = 0;
  if (d < 0)
    rc = FH_FAIL(FH_ERR_DATA, "%s: cannot open %s", what, name);
  else if (H5Tget_class(ty) != H5T_INTEGER || H5Sget_simple_extent_ndims(sp) != 1 ||
           (H5Sget_simple_extent_dims(sp, dims, NULL), (int64_t)dims[0] != n))
    rc = FH_FAIL(FH_ERR_DATA, "%s: %s must be integers [%lld], one per %s", what, name, (long long)n,
                 strcmp(name, "/train/client_domain") == 0 ? "client (run.clients)" : "row of /x");
  if (rc == 0) {
    *v = fh_malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, *v) < 0) {
      char why[256];
      rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read %s (%s)", what, name, fh_h5_reason(why));
    }
  }
  for (int64_t i = 0; rc == 0 && i < n; i++)
    if ((*v)[i] < 0)
      rc = FH_FAIL(FH_ERR_DATA, "%s: %s[%lld] = %d is negative; %s are numbered from 0", what, name, (long long)i,
                   (*v)[i], strstr(name, "domain") ? "domains" : "clients");
  if (ty >= 0) H5Tclose(ty);
  if (sp >= 0) H5Sclose(sp);
  if (d >= 0) H5Dclose(d);
  if (rc) free(*v), *v = NULL;
  return rc;
}

int fh_generator_pool_routes(const char *path, int64_t n, fh_pool_routes *rt) {
  rt->kind = FH_POOL_ROUTE_NONE, rt->id = NULL;
  fh_h5_quiet q;
  fh_h5_quiet_begin(&q);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  int rc = 0;
  char what[1100];
  snprintf(what, sizeof what, "fedgc.pool = %s", path);
  if (f < 0) {
    char why[256];
    rc = FH_FAIL(FH_ERR_DATA, "%s: cannot open it as HDF5 (%s)", what, fh_h5_reason(why));
  } else {
    const int by_client = fh_h5_path_exists(f, "/client"), by_domain = fh_h5_path_exists(f, "/domain");
    if (by_client && by_domain)
      rc = FH_FAIL(FH_ERR_DATA, "%s: holds both /client and /domain; route its rows by one of them", what);
    else if (by_client || by_domain) {
      rt->kind = by_client ? FH_POOL_ROUTE_CLIENT : FH_POOL_ROUTE_DOMAIN;
      rc = read_ids(f, what, by_client ? "/client" : "/domain", n, &rt->id);
      if (rc) rt->kind = FH_POOL_ROUTE_NONE;
    }
    H5Fclose(f);
  }
  fh_h5_quiet_end(&q);
  return rc;
}

int fh_pool_client_domains(const char *data_path, int K, int32_t **dom) {
  *dom = NULL;
  fh_h5_quiet q;
  fh_h5_quiet_begin(&q);
  hid_t f = H5Fopen(data_path, H5F_ACC_RDONLY, H5P_DEFAULT);
  int rc = 0;
  char what[1100];
  snprintf(what, sizeof what, "data.path = %s", data_path);
  if (f < 0) {
    char why[256];
    rc = FH_FAIL(FH_ERR_DATA, "%s: cannot open it as HDF5 (%s)", what, fh_h5_reason(why));
  } else {
    if (!fh_h5_path_exists(f, "/train/client_domain"))
      rc = FH_FAIL(FH_ERR_DATA, "%s: no /train/client_domain; a pool routed by /domain needs each client's domain "
                                "there ([run.clients] integers, docs/dataset-format.md)", what);
    else
      rc = read_ids(f, what, "/train/client_domain", K, dom);
    H5Fclose(f);
  }
  fh_h5_quiet_end(&q);
  return rc;
}
