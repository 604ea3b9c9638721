/* model.h5 files: writing (whole or not at all) and reading back by name. */
#include "io/model_file.h"

#include <hdf5.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/h5util.h"

/* One dataset per view of the given table, values from data. */
static int write_views(hid_t g, const fh_param_view *(*view)(const fh_model *, int), int nviews,
                       const fh_model *m, const float *data) {
  int rc = 0;
  for (int i = 0; i < nviews && rc == 0; i++) {
    const fh_param_view *v = view(m, i);
    hsize_t dims[FH_MAX_DIMS];
    for (int d = 0; d < v->ndim; d++) dims[d] = (hsize_t)v->shape[d];
    rc = fh_h5_write(g, v->name, H5T_NATIVE_FLOAT, v->ndim, dims, data + v->offset);
  }
  return rc;
}

int fh_model_save_state(const char *path, const fh_model *m, const float *params,
                        const float *buffers, const int in_shape[3], const char *config_ini) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  hid_t f = fh_h5_mem_create(); /* written to disk whole by fh_h5_mem_commit */
  if (f < 0) return FH_FAIL(FH_ERR_RUNTIME, "%s: cannot create the file in memory", tmp);
  if (!buffers) buffers = fh_model_buffers_ro(m);
  hid_t g = fh_h5_group(f, "params");
  int rc = write_views(g, fh_model_view, fh_model_nviews(m), m, params);
  if (rc == 0) rc = write_views(g, fh_model_buffer_view, fh_model_nbuffer_views(m), m, buffers);
  H5Gclose(g);
  long long shape[3] = {in_shape[0], in_shape[1], in_shape[2]};
  if (rc == 0) rc = fh_h5_attr_str(f, "arch", fh_model_arch(m));
  if (rc == 0) rc = fh_h5_attr_int(f, "num_classes", fh_model_num_classes(m));
  if (rc == 0) rc = fh_h5_attr_int(f, "nparams", (long long)fh_model_nparams(m));
  if (rc == 0) rc = fh_h5_attr_int(f, "nbuffers", (long long)fh_model_nbuffers(m));
  if (rc == 0) {
    hsize_t three = 3;
    hid_t sp = H5Screate_simple(1, &three, NULL);
    hid_t a = H5Acreate2(f, "input_shape", H5T_NATIVE_LLONG, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, H5T_NATIVE_LLONG, shape) < 0) rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write input_shape", tmp);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
  }
  if (rc == 0 && config_ini) rc = fh_h5_attr_str(f, "config", config_ini);
  if (rc != 0) {
    H5Fclose(f);
    return rc;
  }
  FH_TRY(fh_h5_mem_commit(f, tmp));
  if (rename(tmp, path) != 0) {
    int e = errno;
    remove(tmp);
    return FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s: %s", tmp, path, strerror(e));
  }
  return 0;
}

int fh_model_save(const char *path, const fh_model *m, const float *params, const int in_shape[3],
                  const char *config_ini) {
  return fh_model_save_state(path, m, params, NULL, in_shape, config_ini);
}

/* Reads /params/<view> of every view of the table into data. */
static int read_views(const char *path, hid_t f, const fh_param_view *(*view)(const fh_model *, int),
                      int nviews, const fh_model *m, float *data) {
  int rc = 0;
  for (int i = 0; i < nviews && rc == 0; i++) {
    const fh_param_view *v = view(m, i);
    char name[96];
    snprintf(name, sizeof name, "params/%s", v->name);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) {
      rc = FH_FAIL(FH_ERR_DATA, "%s: no dataset /%s (is it a model of arch %s?)", path, name, fh_model_arch(m));
      break;
    }
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    if (n != (hssize_t)v->numel)
      rc = FH_FAIL(FH_ERR_DATA, "%s: /%s has %lld values, the model expects %zu", path, name, (long long)n, v->numel);
    else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data + v->offset) < 0)
      rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read /%s", path, name);
    H5Sclose(sp);
    H5Dclose(d);
  }
  return rc;
}

static int load_views(const char *path, const fh_model *m, float *data, int buffers) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return FH_FAIL(FH_ERR_DATA, "%s: cannot open model file", path);
  const int rc = buffers ? read_views(path, f, fh_model_buffer_view, fh_model_nbuffer_views(m), m, data)
                         : read_views(path, f, fh_model_view, fh_model_nviews(m), m, data);
  H5Fclose(f);
  return rc;
}

int fh_model_load_params(const char *path, const fh_model *m, float *params) {
  return load_views(path, m, params, 0);
}

int fh_model_load_buffers(const char *path, const fh_model *m, float *buffers) {
  return load_views(path, m, buffers, 1);
}

int fh_model_file_info(const char *path, char *arch, size_t cap, int in_shape[3],
                       int *num_classes) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return FH_FAIL(FH_ERR_DATA, "%s: cannot open model file", path);
  int rc = 0;
  long long shape[3] = {0, 0, 0}, classes = 0;
  hid_t a = H5Aopen(f, "arch", H5P_DEFAULT);
  hid_t t = a >= 0 ? H5Aget_type(a) : -1;
  if (t < 0 || H5Tget_class(t) != H5T_STRING) {
    rc = FH_FAIL(FH_ERR_DATA, "%s: no string attribute 'arch' (not a fedhpc model file?)", path);
  } else if (H5Tis_variable_str(t) > 0) { /* as h5py writes a Python str */
    char *v = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    if (H5Aread(a, mt, &v) < 0 || !v) rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read attribute 'arch'", path);
    else snprintf(arch, cap, "%s", v);
    if (v) H5free_memory(v);
    H5Tclose(mt);
  } else {
    const size_t n = H5Tget_size(t);
    char *v = fh_calloc(n + 1, 1);
    if (H5Aread(a, t, v) < 0) rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read attribute 'arch'", path);
    else snprintf(arch, cap, "%s", v);
    free(v);
  }
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  if (rc == 0) {
    hid_t s = H5Aopen(f, "input_shape", H5P_DEFAULT);
    hid_t c = H5Aopen(f, "num_classes", H5P_DEFAULT);
    if (s < 0 || c < 0 || H5Aread(s, H5T_NATIVE_LLONG, shape) < 0 ||
        H5Aread(c, H5T_NATIVE_LLONG, &classes) < 0)
      rc = FH_FAIL(FH_ERR_DATA, "%s: attributes input_shape [3] and num_classes missing", path);
    if (s >= 0) H5Aclose(s);
    if (c >= 0) H5Aclose(c);
  }
  H5Fclose(f);
  if (rc) return rc;
  if (shape[0] < 1 || shape[1] < 1 || shape[2] < 1 || classes < 1 || shape[0] > 1000000000LL ||
      shape[1] > 1000000000LL || shape[2] > 1000000000LL || classes > 1000000000LL)
    return FH_FAIL(FH_ERR_DATA, "%s: input_shape [%lld, %lld, %lld] or num_classes %lld out of range",
                   path, shape[0], shape[1], shape[2], classes);
  for (int d = 0; d < 3; d++) in_shape[d] = (int)shape[d];
  *num_classes = (int)classes;
  return 0;
}
