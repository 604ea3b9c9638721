#include "io/h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/paths.h"

int fh_h5_attr_str(hid_t obj, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1);
  size_t len = strlen(value);
  H5Tset_size(t, len > 0 ? len : 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  hid_t sp = H5Screate(H5S_SCALAR);
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = a < 0 ? -1 : H5Awrite(a, t, len > 0 ? value : "");
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  return st < 0 ? FH_FAIL(FH_ERR_OUTPUT, "cannot write HDF5 attribute '%s'", name) : 0;
}

static int attr_scalar(hid_t obj, const char *name, hid_t type, const void *v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = a < 0 ? -1 : H5Awrite(a, type, v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return st < 0 ? FH_FAIL(FH_ERR_OUTPUT, "cannot write HDF5 attribute '%s'", name) : 0;
}

int fh_h5_attr_int(hid_t obj, const char *name, long long value) {
  return attr_scalar(obj, name, H5T_NATIVE_LLONG, &value);
}

int fh_h5_attr_double(hid_t obj, const char *name, double value) {
  return attr_scalar(obj, name, H5T_NATIVE_DOUBLE, &value);
}

int fh_h5_series_create(fh_h5_series *s, hid_t loc, const char *name, hid_t type, int ndim_row,
                        const hsize_t *row_shape) {
  memset(s, 0, sizeof *s);
  s->type = type;
  s->ndim = ndim_row + 1;
  hsize_t maxdims[4], chunk[4];
  s->dims[0] = 0;
  maxdims[0] = H5S_UNLIMITED;
  chunk[0] = 64;
  for (int i = 0; i < ndim_row; i++) {
    s->dims[i + 1] = row_shape[i];
    maxdims[i + 1] = row_shape[i];
    chunk[i + 1] = row_shape[i] > 0 ? row_shape[i] : 1;
  }
  hid_t sp = H5Screate_simple(s->ndim, s->dims, maxdims);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, s->ndim, chunk);
  s->dset = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(sp);
  return s->dset < 0 ? FH_FAIL(FH_ERR_OUTPUT, "cannot create HDF5 dataset '%s'", name) : 0;
}

int fh_h5_series_append(fh_h5_series *s, const void *row) {
  hsize_t start[4] = {0}, count[4];
  start[0] = s->dims[0];
  count[0] = 1;
  for (int i = 1; i < s->ndim; i++) count[i] = s->dims[i];
  s->dims[0] += 1;
  if (H5Dset_extent(s->dset, s->dims) < 0) return FH_FAIL(FH_ERR_OUTPUT, "cannot extend HDF5 dataset");
  hid_t fsp = H5Dget_space(s->dset);
  H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
  hid_t msp = H5Screate_simple(s->ndim, count, NULL);
  herr_t st = H5Dwrite(s->dset, s->type, msp, fsp, H5P_DEFAULT, row);
  H5Sclose(msp);
  H5Sclose(fsp);
  return st < 0 ? FH_FAIL(FH_ERR_OUTPUT, "cannot write HDF5 dataset row") : 0;
}

void fh_h5_series_close(fh_h5_series *s) {
  if (s->dset > 0) H5Dclose(s->dset);
  s->dset = 0;
}

int fh_h5_write(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *dims,
                const void *data) {
  hid_t sp = H5Screate_simple(ndim, dims, NULL);
  hid_t d = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = d < 0 ? -1 : H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (d >= 0) H5Dclose(d);
  H5Sclose(sp);
  return st < 0 ? FH_FAIL(FH_ERR_OUTPUT, "cannot write HDF5 dataset '%s'", name) : 0;
}

hid_t fh_h5_group(hid_t loc, const char *path) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  hid_t cur = H5Gopen2(loc, ".", H5P_DEFAULT);
  for (char *tok = strtok(buf, "/"); tok; tok = strtok(NULL, "/")) {
    hid_t next = H5Lexists(cur, tok, H5P_DEFAULT) > 0
                     ? H5Gopen2(cur, tok, H5P_DEFAULT)
                     : H5Gcreate2(cur, tok, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(cur);
    cur = next;
    if (cur < 0) return -1;
  }
  return cur;
}

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
  if (n == 0 && e->desc) snprintf((char *)data, 256, "%s", e->desc);
  return 0;
}

const char *fh_h5_reason(char buf[256]) {
  char inner[256] = "";
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, inner);
  /* Reads past the end of the file, bad signatures or checksums, an unknown
   * object header version: a truncated or damaged file. */
  static const char *const damaged[] = {"truncated", "addr overflow", "eoa", "EOF", "file read failed",
                                        "signature", "checksum", "version number", "bad object header"};
  int is_damaged = inner[0] == '\0';
  for (size_t i = 0; i < sizeof damaged / sizeof damaged[0]; i++)
    if (strstr(inner, damaged[i])) is_damaged = 1;
  if (is_damaged)
    snprintf(buf, 256, "the file is truncated or damaged (%.120s); copy or create it again",
             inner[0] ? inner : "an HDF5 read failed");
  else
    snprintf(buf, 256, "%s", inner);
  return buf;
}

void fh_h5_quiet_begin(fh_h5_quiet *q) {
  H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void fh_h5_quiet_end(const fh_h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

long long fh_h5_attr_int_get(hid_t obj, const char *name, long long dflt) {
  long long v = dflt;
  if (H5Aexists(obj, name) <= 0) return dflt;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0 || H5Aread(a, H5T_NATIVE_LLONG, &v) < 0) v = dflt;
  if (a >= 0) H5Aclose(a);
  return v;
}

int fh_h5_path_exists(hid_t loc, const char *path) {
  char prefix[256];
  size_t len = strlen(path);
  if (len >= sizeof prefix) return 0;
  for (size_t i = 1; i <= len; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    memcpy(prefix, path, i);
    prefix[i] = '\0';
    if (H5Lexists(loc, prefix, H5P_DEFAULT) <= 0) return 0;
  }
  return 1;
}

hid_t fh_h5_mem_create(void) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(fapl, (size_t)1 << 20, 0);
  hid_t f = H5Fcreate("fedhpc-in-memory.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  return f;
}

int fh_h5_mem_commit(hid_t f, const char *path) {
  ssize_t n = H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 ? -1 : H5Fget_file_image(f, NULL, 0);
  char *img = n > 0 ? malloc((size_t)n) : NULL;
  if (img && H5Fget_file_image(f, img, (size_t)n) != n) n = -1;
  H5Fclose(f); /* in memory: nothing to fail */
  if (n <= 0 || !img) {
    free(img);
    return FH_FAIL(FH_ERR_RUNTIME, "%s: cannot build the file in memory (%lld bytes)", path, (long long)n);
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = 0;
  if (fd < 0) e = errno;
  for (size_t off = 0; fd >= 0 && e == 0 && off < (size_t)n;) {
    ssize_t w = write(fd, img + off, (size_t)n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) e = w < 0 ? errno : ENOSPC;
    else off += (size_t)w;
  }
  if (fd >= 0 && e == 0 && fsync(fd) != 0) e = errno;
  if (fd >= 0 && close(fd) != 0 && e == 0) e = errno;
  free(img);
  if (e == 0) return 0;
  if (fd >= 0) unlink(path);
  const char *cause = fh_write_cause(path, e);
  return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write %lld bytes: %s; free space or set output.dir to another file system",
                 path, (long long)n, cause[0] ? cause : strerror(e));
}

int fh_h5_close(hid_t f, const char *path) {
  if (f < 0) return 0;
  if (H5Fclose(f) >= 0) return 0;
  const char *cause = fh_write_cause(path, errno);
  return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write the file's last data%s%s", path, cause[0] ? ": " : "", cause);
}

int fh_h5_files_left_open(void) { return H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE) > 0; }
