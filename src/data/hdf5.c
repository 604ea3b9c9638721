/* The HDF5 source: a file laid out as docs/dataset-format.md describes,
 *   /train/x [N, D] | [N, H, W] | [N, C, H, W], any numeric type (read as float32)
 *   /train/y [N], any integer type (read as int32); /test/x, /test/y likewise
 *   root attributes num_classes (integer >= 2), optionally name (string),
 *   value_scale (number > 0), mean and std (1 or C numbers)
 *   optional /train/client_offsets, /test/client_offsets [K+1] integers
 * With offsets, the file's natural clients: client k owns rows offsets[k] ..
 * offsets[k+1]-1 of each split (the partition's "natural" method keeps them).
 *
 * Every rank opens the file on its own (default, serial access) and reads all
 * labels at open; features are read on demand, only for the rows asked for,
 * coalesced into hyperslab reads, so the memory of a rank falls as ranks grow. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "io/h5util.h"
#include "data/source_impl.h"

/* Reads coalesce wanted rows into one hyperslab when fewer than READ_GAP_BYTES of
 * unwanted rows lie between them (cheaper than another H5Dread call), up to
 * READ_WINDOW_BYTES per read (the bounce buffer). */
#define READ_WINDOW_BYTES ((size_t)4 << 20)
#define READ_GAP_BYTES ((size_t)128 << 10)

enum { TRAIN = FH_SPLIT_TRAIN, TEST = FH_SPLIT_TEST };

typedef struct {
  const char *group; /* "/train" */
  hid_t x, y;
  hsize_t rows;
  int64_t *offsets; /* [K+1], or NULL (moved to the fh_source once checked) */
} h5_split;

typedef struct {
  char *path; /* as data.path gives it: messages name it */
  hid_t file;
  int num_classes;
  char name[64];
  int xrank;          /* 2, 3 or 4 */
  hsize_t xdims[4];   /* of /train/x */
  int c, h, w, dim;
  int num_clients;    /* run.clients: what the IID rows must serve    */
  int file_clients;   /* K of the client_offsets                       */
  h5_split split[2];
} h5_source;

/* ---- opening and checking the layout ---------------------------------------- */

static void close_id(hid_t *id, herr_t (*close)(hid_t)) {
  if (*id >= 0) close(*id);
  *id = H5I_INVALID_HID;
}

static void h5_close(fh_source *src) {
  h5_source *s = src->impl;
  if (!s) return;
  fh_h5_quiet q;
  fh_h5_quiet_begin(&q);
  for (int i = 0; i < 2; i++) {
    close_id(&s->split[i].x, H5Dclose);
    close_id(&s->split[i].y, H5Dclose);
    free(s->split[i].offsets);
  }
  close_id(&s->file, H5Fclose);
  fh_h5_quiet_end(&q);
  free(s->path);
  free(s);
  src->impl = NULL;
}

static int open_dataset(const h5_source *s, const char *path, hid_t *out) {
  if (!fh_h5_path_exists(s->file, path))
    return FH_FAIL(FH_ERR_DATA, "%s: no dataset %s; see docs/dataset-format.md", s->path, path);
  *out = H5Dopen2(s->file, path, H5P_DEFAULT);
  if (*out < 0)
    return FH_FAIL(FH_ERR_DATA, "%s: %s is not a dataset; see docs/dataset-format.md", s->path, path);
  return 0;
}

/* Rank, dims (up to 4) and type class of a dataset. */
static int dataset_shape(const h5_source *s, hid_t d, const char *path, int *rank, hsize_t dims[4],
                         H5T_class_t *cls) {
  char why[256];
  hid_t space = H5Dget_space(d), type = H5Dget_type(d);
  int r = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  if (r >= 0 && r <= 4) H5Sget_simple_extent_dims(space, dims, NULL);
  *cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  if (r < 0) return FH_FAIL(FH_ERR_DATA, "%s: cannot read the shape of %s: %s", s->path, path, fh_h5_reason(why));
  *rank = r;
  return 0;
}

static int read_num_classes(h5_source *s) {
  if (H5Aexists(s->file, "num_classes") <= 0)
    return FH_FAIL(FH_ERR_DATA,
                   "%s: no root attribute num_classes; add it (an integer >= 2), see docs/dataset-format.md",
                   s->path);
  char why[256];
  hid_t a = H5Aopen(s->file, "num_classes", H5P_DEFAULT);
  hid_t type = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
  hid_t space = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
  int ok = type >= 0 && H5Tget_class(type) == H5T_INTEGER && space >= 0 && H5Sget_simple_extent_npoints(space) == 1;
  long long v = 0;
  herr_t st = ok ? H5Aread(a, H5T_NATIVE_LLONG, &v) : -1;
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  if (a >= 0) H5Aclose(a);
  if (!ok) return FH_FAIL(FH_ERR_DATA, "%s: root attribute num_classes must be one integer", s->path);
  if (st < 0) return FH_FAIL(FH_ERR_DATA, "%s: cannot read attribute num_classes: %s", s->path, fh_h5_reason(why));
  if (v < 2)
    return FH_FAIL(FH_ERR_DATA, "%s: num_classes = %lld; a classification dataset needs at least 2 classes",
                   s->path, v);
  if (v > 1000000)
    return FH_FAIL(FH_ERR_DATA, "%s: root attribute num_classes = %lld: more than 1000000 classes; the attribute "
                                "is wrong (set it to the number of classes of the labels)", s->path, v);
  s->num_classes = (int)v;
  return 0;
}

/* The optional root attribute name, else the file's base name without extension. */
static int read_name(h5_source *s) {
  if (H5Aexists(s->file, "name") <= 0) {
    const char *base = strrchr(s->path, '/');
    base = base ? base + 1 : s->path;
    snprintf(s->name, sizeof s->name, "%s", base);
    char *dot = strrchr(s->name, '.');
    if (dot && dot != s->name) *dot = '\0';
    return 0;
  }
  char why[256];
  hid_t a = H5Aopen(s->file, "name", H5P_DEFAULT);
  hid_t ftype = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
  int rc = 0;
  if (ftype < 0 || H5Tget_class(ftype) != H5T_STRING) {
    rc = FH_FAIL(FH_ERR_DATA, "%s: root attribute name must be a string", s->path);
  } else {
    hid_t mtype = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    if (H5Tis_variable_str(ftype) > 0) {
      char *v = NULL;
      H5Tset_size(mtype, H5T_VARIABLE);
      if (H5Aread(a, mtype, &v) < 0) {
        rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read attribute name: %s", s->path, fh_h5_reason(why));
      } else {
        snprintf(s->name, sizeof s->name, "%s", v ? v : "");
        H5free_memory(v);
      }
    } else {
      size_t len = H5Tget_size(ftype);
      char *v = fh_calloc(len + 1, 1);
      H5Tset_size(mtype, len + 1);
      H5Tset_strpad(mtype, H5T_STR_NULLTERM);
      if (H5Aread(a, mtype, v) < 0)
        rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read attribute name: %s", s->path, fh_h5_reason(why));
      else
        snprintf(s->name, sizeof s->name, "%s", v);
      free(v);
    }
    H5Tclose(mtype);
  }
  if (ftype >= 0) H5Tclose(ftype);
  if (a >= 0) H5Aclose(a);
  return rc;
}

static void shape_text(char *buf, size_t len, int rank, const hsize_t *dims) {
  size_t at = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < rank && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
  if (at < len) snprintf(buf + at, len - at, "]");
}

/* Opens /<group>/x and /y and checks their types and shapes; the train split
 * sets the sample shape that the test split must match. */
static int open_split(h5_source *s, int which) {
  h5_split *sp = &s->split[which];
  char xpath[64], ypath[64];
  snprintf(xpath, sizeof xpath, "%s/x", sp->group);
  snprintf(ypath, sizeof ypath, "%s/y", sp->group);
  FH_TRY(open_dataset(s, xpath, &sp->x));
  FH_TRY(open_dataset(s, ypath, &sp->y));

  int xr, yr;
  hsize_t xd[4], yd[4];
  H5T_class_t xc, yc;
  FH_TRY(dataset_shape(s, sp->x, xpath, &xr, xd, &xc));
  FH_TRY(dataset_shape(s, sp->y, ypath, &yr, yd, &yc));
  if (xc != H5T_FLOAT && xc != H5T_INTEGER)
    return FH_FAIL(FH_ERR_DATA, "%s: %s must hold numbers (float32 features)", s->path, xpath);
  if (yc != H5T_INTEGER)
    return FH_FAIL(FH_ERR_DATA, "%s: %s must hold integer labels in [0, num_classes)", s->path, ypath);
  if (xr < 2 || xr > 4)
    return FH_FAIL(FH_ERR_DATA, "%s: %s has rank %d; it must be [N, D], [N, H, W] or [N, C, H, W]", s->path,
                   xpath, xr);
  if (yr != 1)
    return FH_FAIL(FH_ERR_DATA, "%s: %s has rank %d; it must be [N], one label per row of %s", s->path, ypath,
                   yr, xpath);
  if (xd[0] != yd[0])
    return FH_FAIL(FH_ERR_DATA, "%s: %s has %llu rows but %s has %llu; they must match", s->path, xpath,
                   (unsigned long long)xd[0], ypath, (unsigned long long)yd[0]);
  sp->rows = xd[0];

  if (which == TRAIN) {
    double dim = 1;
    for (int i = 1; i < xr; i++) dim *= (double)xd[i];
    if (dim < 1 || dim > 0x7fffffff)
      return FH_FAIL(FH_ERR_DATA, "%s: %s samples have %.0f features; expected 1 .. 2^31-1", s->path, xpath, dim);
    s->xrank = xr;
    memcpy(s->xdims, xd, sizeof xd);
    s->c = xr == 4 ? (int)xd[1] : xr == 2 ? (int)xd[1] : 1;
    s->h = xr == 4 ? (int)xd[2] : xr == 3 ? (int)xd[1] : 1;
    s->w = xr == 4 ? (int)xd[3] : xr == 3 ? (int)xd[2] : 1;
    s->dim = (int)dim;
  } else if (xr != s->xrank || memcmp(xd + 1, s->xdims + 1, sizeof(hsize_t) * (size_t)(xr - 1)) != 0) {
    char a[96], b[96];
    shape_text(a, sizeof a, xr - 1, xd + 1);
    shape_text(b, sizeof b, s->xrank - 1, s->xdims + 1);
    return FH_FAIL(FH_ERR_DATA, "%s: %s samples are %s but /train/x samples are %s; they must match", s->path,
                   xpath, a, b);
  }
  return 0;
}

static const char *FEW_ROWS_HINT = "each client needs at least one train and one test sample";

/* /<group>/client_offsets [K+1]: starts at 0, never decreases, ends at the
 * split's rows, K = run.clients, and no client is empty. */
static int read_offsets(h5_source *s, int which) {
  h5_split *sp = &s->split[which];
  char path[64], why[256];
  snprintf(path, sizeof path, "%s/client_offsets", sp->group);
  hid_t d = H5I_INVALID_HID;
  FH_TRY(open_dataset(s, path, &d));
  int r;
  hsize_t dims[4];
  H5T_class_t cls;
  int rc = dataset_shape(s, d, path, &r, dims, &cls);
  if (rc == 0 && (r != 1 || cls != H5T_INTEGER || dims[0] < 2))
    rc = FH_FAIL(FH_ERR_DATA, "%s: %s must be one integer array of K+1 row offsets (K clients)", s->path, path);
  if (rc == 0 && dims[0] - 1 > 0x7fffffff)
    rc = FH_FAIL(FH_ERR_DATA, "%s: %s has %llu clients; at most 2^31-1", s->path, path,
                 (unsigned long long)(dims[0] - 1));
  if (rc == 0 && which == TRAIN) s->file_clients = (int)(dims[0] - 1);
  if (rc == 0 && which == TEST && dims[0] - 1 != (hsize_t)s->file_clients)
    rc = FH_FAIL(FH_ERR_DATA, "%s: %s has %llu clients but /train/client_offsets has %d; they must match", s->path,
                 path, (unsigned long long)(dims[0] - 1), s->file_clients);
  if (rc == 0) {
    sp->offsets = fh_malloc(sizeof(int64_t) * dims[0]);
    if (H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, sp->offsets) < 0)
      rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read %s: %s", s->path, path, fh_h5_reason(why));
  }
  H5Dclose(d);
  if (rc != 0) return rc;

  const int64_t *o = sp->offsets;
  const int K = s->file_clients;
  if (o[0] != 0 || o[K] != (int64_t)sp->rows)
    return FH_FAIL(FH_ERR_DATA, "%s: %s runs from %lld to %lld; it must run from 0 to the %llu rows of %s/x", s->path,
                   path, (long long)o[0], (long long)o[K], (unsigned long long)sp->rows, sp->group);
  for (int k = 0; k < K; k++) {
    if (o[k + 1] < o[k])
      return FH_FAIL(FH_ERR_DATA, "%s: %s decreases at client %d (%lld > %lld); offsets must not decrease",
                     s->path, path, k, (long long)o[k], (long long)o[k + 1]);
    if (o[k + 1] == o[k])
      return FH_FAIL(FH_ERR_DATA, "%s: client %d has no rows in %s (%s[%d] = %s[%d] = %lld); %s", s->path, k,
                     sp->group, path, k, path, k + 1, (long long)o[k], FEW_ROWS_HINT);
    if (o[k + 1] - o[k] > 0x7fffffff)
      return FH_FAIL(FH_ERR_DATA, "%s: client %d has %lld rows in %s; at most 2^31-1 per client", s->path, k,
                     (long long)(o[k + 1] - o[k]), sp->group);
  }
  return 0;
}

/* The default (serial) driver, without HDF5's file lock: a read-only load
 * needs none, and taking it fails ("unable to lock file") on parallel file
 * systems mounted without flock, where many ranks open the same file. */
static hid_t open_read_only(const char *path) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
  if (fapl >= 0) H5Pset_file_locking(fapl, 0, 1);
#endif
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
  if (fapl >= 0) H5Pclose(fapl);
  return file;
}

static int open_source(h5_source *s) {
  if (s->path[0] == '\0')
    return FH_FAIL(FH_ERR_CONFIG,
                   "data.path is empty; data.source = hdf5 needs the path of a dataset file "
                   "(layout in docs/dataset-format.md)");

  struct stat st;
  if (stat(s->path, &st) != 0)
    return FH_FAIL(FH_ERR_DATA, "data.path = '%s': %s", s->path,
                   errno == ENOENT ? "no such file" : strerror(errno));
  if (S_ISDIR(st.st_mode)) return FH_FAIL(FH_ERR_DATA, "data.path = '%s': is a directory, not a file", s->path);
  if (H5Fis_hdf5(s->path) <= 0)
    return FH_FAIL(FH_ERR_DATA, "data.path = '%s': not an HDF5 file (layout in docs/dataset-format.md)", s->path);
  char why[256];
  s->file = open_read_only(s->path);
  if (s->file < 0) return FH_FAIL(FH_ERR_DATA, "data.path = '%s': cannot open: %s", s->path, fh_h5_reason(why));

  FH_TRY(read_num_classes(s));
  FH_TRY(read_name(s));
  FH_TRY(open_split(s, TRAIN));
  FH_TRY(open_split(s, TEST));

  int has_train = fh_h5_path_exists(s->file, "/train/client_offsets");
  int has_test = fh_h5_path_exists(s->file, "/test/client_offsets");
  if (has_train != has_test)
    return FH_FAIL(FH_ERR_DATA, "%s: has %s/client_offsets but no %s/client_offsets; give both or neither",
                   s->path, has_train ? "/train" : "/test", has_train ? "/test" : "/train");
  if (has_train) {
    FH_TRY(read_offsets(s, TRAIN));
    FH_TRY(read_offsets(s, TEST));
  } else {
    for (int i = 0; i < 2; i++) {
      const h5_split *sp = &s->split[i];
      if (sp->rows < (hsize_t)s->num_clients)
        return FH_FAIL(FH_ERR_DATA, "%s: %s has %llu rows, too few for %d clients (run.clients); %s", s->path,
                       sp->group, (unsigned long long)sp->rows, s->num_clients, FEW_ROWS_HINT);
    }
  }
  return 0;
}

/* ---- optional normalisation attributes ------------------------------------- */

/* Root attribute `name` as up to max doubles: 0 and *count = 0 when absent. */
static int read_attr_reals(const h5_source *s, const char *name, double *out, int max, int *count) {
  *count = 0;
  if (H5Aexists(s->file, name) <= 0) return 0;
  char why[256];
  hid_t a = H5Aopen(s->file, name, H5P_DEFAULT);
  hid_t type = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
  hid_t space = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
  H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  int rc = 0;
  if (cls != H5T_INTEGER && cls != H5T_FLOAT)
    rc = FH_FAIL(FH_ERR_DATA, "%s: root attribute %s must hold numbers", s->path, name);
  else if (n != 1 && n != max)
    rc = FH_FAIL(FH_ERR_DATA, "%s: root attribute %s has %lld values; it must have 1 or %d (one per channel)", s->path,
                 name, (long long)n, max);
  else if (H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0)
    rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read attribute %s: %s", s->path, name, fh_h5_reason(why));
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  if (a >= 0) H5Aclose(a);
  if (rc == 0) *count = (int)n;
  return rc;
}

/* value_scale, mean and std: the file's own normalisation, when it has one. */
static int read_norm(h5_source *s, fh_source *src) {
  double scale = 1;
  int n;
  FH_TRY(read_attr_reals(s, "value_scale", &scale, 1, &n));
  if (n == 1 && !(scale > 0 && isfinite(scale)))
    return FH_FAIL(FH_ERR_DATA, "%s: root attribute value_scale = %g; it must be a positive number", s->path, scale);
  src->value_scale = (float)scale;

  double *m = fh_malloc(sizeof(double) * (size_t)s->c), *sd = fh_malloc(sizeof(double) * (size_t)s->c);
  int nm = 0, ns = 0;
  int rc = read_attr_reals(s, "mean", m, s->c, &nm);
  if (rc == 0) rc = read_attr_reals(s, "std", sd, s->c, &ns);
  if (rc == 0 && nm != ns)
    rc = FH_FAIL(FH_ERR_DATA, "%s: root attributes mean and std must both be given (with 1 or %d values each)",
                 s->path, s->c);
  for (int i = 0; i < ns && rc == 0; i++)
    if (!(sd[i] > 0 && isfinite(sd[i]) && isfinite(m[i])))
      rc = FH_FAIL(FH_ERR_DATA, "%s: root attribute std[%d] = %g (mean %g); std must be positive and both finite",
                   s->path, i, sd[i], m[i]);
  if (rc == 0 && nm > 0) {
    float *fm = fh_malloc(sizeof(float) * (size_t)nm), *fs = fh_malloc(sizeof(float) * (size_t)nm);
    for (int i = 0; i < nm; i++) {
      fm[i] = (float)m[i];
      fs[i] = (float)sd[i];
    }
    fh_source_set_norm(src, fm, fs, nm);
    free(fm);
    free(fs);
  }
  free(m);
  free(sd);
  return rc;
}

/* ---- labels and rows ---------------------------------------------------------- */

/* Every label of a split, range-checked: the first offender in file order. */
static int read_labels(const h5_source *s, int which, int32_t **out) {
  const h5_split *sp = &s->split[which];
  char why[256];
  int32_t *y = fh_malloc(sizeof(int32_t) * (size_t)(sp->rows ? sp->rows : 1));
  *out = y;
  /* read as 64-bit: a label beyond int32 is reported as it is, not clipped */
  int64_t *y64 = fh_malloc(sizeof(int64_t) * (size_t)(sp->rows ? sp->rows : 1));
  if (sp->rows > 0 && H5Dread(sp->y, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y64) < 0) {
    free(y64);
    return FH_FAIL(FH_ERR_DATA, "%s: cannot read %s/y: %s", s->path, sp->group, fh_h5_reason(why));
  }
  for (hsize_t i = 0; i < sp->rows; i++) {
    if (y64[i] < 0 || y64[i] >= s->num_classes) {
      long long bad = (long long)y64[i];
      free(y64);
      return FH_FAIL(FH_ERR_DATA, "%s: %s/y[%llu] = %lld is outside [0, %d) (num_classes = %d)", s->path,
                     sp->group, (unsigned long long)i, bad, s->num_classes, s->num_classes);
    }
    y[i] = (int32_t)y64[i];
  }
  free(y64);
  return 0;
}

/* Reads file rows rows[0..n) (ascending, repeats allowed) of /<group>/x as
 * float32 into x [n, dim]. Rows close together share one hyperslab read
 * through a bounce buffer; a run of consecutive rows is read in place. */
static int read_x(const h5_source *s, const h5_split *sp, const int64_t *rows, int64_t n, float *x) {
  const size_t row_bytes = (size_t)s->dim * sizeof(float);
  const hsize_t window = READ_WINDOW_BYTES / row_bytes > 0 ? READ_WINDOW_BYTES / row_bytes : 1;
  const hsize_t gap = READ_GAP_BYTES / row_bytes;
  char *bounce = NULL, why[256];
  int rc = 0;
  hid_t fspace = H5Dget_space(sp->x);
  if (fspace < 0) return FH_FAIL(FH_ERR_DATA, "%s: cannot read %s/x: %s", s->path, sp->group, fh_h5_reason(why));

  for (int64_t i = 0, j; i < n && rc == 0; i = j + 1) {
    if (rows[i] < 0 || (hsize_t)rows[i] >= sp->rows) {
      rc = FH_FAIL(FH_ERR_RUNTIME, "%s: row %lld of %s asked for, but it has %llu", s->path, (long long)rows[i],
                   sp->group, (unsigned long long)sp->rows);
      break;
    }
    const hsize_t first = (hsize_t)rows[i];
    int in_place = 1;
    for (j = i; j + 1 < n; j++) {
      const hsize_t cur = (hsize_t)rows[j], next = (hsize_t)rows[j + 1];
      if (next >= sp->rows || (next > cur && next - cur - 1 > gap) || next - first >= window) break;
      if (next != cur + 1) in_place = 0;
    }
    const hsize_t span = (hsize_t)rows[j] - first + 1;
    hsize_t start[4] = {first, 0, 0, 0}, cnt[4] = {span, 1, 1, 1};
    for (int t = 1; t < s->xrank; t++) cnt[t] = s->xdims[t];
    hsize_t mcount = span * (hsize_t)s->dim;
    char *dst = (char *)(x + (size_t)i * (size_t)s->dim);
    if (!in_place) {
      if (!bounce) bounce = fh_malloc(window * row_bytes);
      dst = bounce;
    }
    hid_t mspace = H5Screate_simple(1, &mcount, NULL);
    if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
        H5Dread(sp->x, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, dst) < 0)
      rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read %s/x rows %llu..%llu: %s", s->path, sp->group,
                   (unsigned long long)first, (unsigned long long)rows[j], fh_h5_reason(why));
    H5Sclose(mspace);
    if (rc == 0 && !in_place)
      for (int64_t t = i; t <= j; t++)
        memcpy(x + (size_t)t * (size_t)s->dim, bounce + ((hsize_t)rows[t] - first) * row_bytes, row_bytes);
  }
  free(bounce);
  H5Sclose(fspace);
  /* Features finite: the first offender in file order. */
  for (int64_t i = 0; i < n && rc == 0; i++) {
    const float *r = x + (size_t)i * (size_t)s->dim;
    for (int f = 0; f < s->dim; f++)
      if (!isfinite(r[f])) {
        rc = FH_FAIL(FH_ERR_DATA, "%s: %s/x[%lld] has a non-finite feature (%g at flat index %d); clean the data",
                     s->path, sp->group, (long long)rows[i], (double)r[f], f);
        break;
      }
  }
  return rc;
}

static int h5_read_rows(fh_source *src, int split, const int64_t *rows, int64_t count, float *x) {
  fh_h5_quiet q;
  fh_h5_quiet_begin(&q);
  int rc = read_x(src->impl, &((h5_source *)src->impl)->split[split], rows, count, x);
  fh_h5_quiet_end(&q);
  return rc;
}

static int open_all(h5_source *s, fh_source *src) {
  FH_TRY(open_source(s));
  snprintf(src->name, sizeof src->name, "%s", s->name);
  src->num_classes = s->num_classes;
  src->c = s->c;
  src->h = s->h;
  src->w = s->w;
  src->dim = s->dim;
  for (int i = 0; i < 2; i++) {
    src->n[i] = (int64_t)s->split[i].rows;
    FH_TRY(read_labels(s, i, &src->labels[i]));
    src->offsets[i] = s->split[i].offsets;
    s->split[i].offsets = NULL;
  }
  if (src->offsets[TRAIN]) {
    src->natural_clients = s->file_clients;
    snprintf(src->natural_from, sizeof src->natural_from, "/train/client_offsets");
  }
  return read_norm(s, src);
}

int fh_hdf5_open(fh_source *src, const fh_config *cfg) {
  h5_source *s = fh_calloc(1, sizeof *s);
  s->file = H5I_INVALID_HID;
  for (int i = 0; i < 2; i++) s->split[i].x = s->split[i].y = H5I_INVALID_HID;
  s->split[TRAIN].group = "/train";
  s->split[TEST].group = "/test";
  s->num_clients = (int)fh_cfg_int(cfg, "run.clients");
  s->path = strdup(fh_cfg_str(cfg, "data.path"));
  src->impl = s;
  src->close = h5_close;
  src->read_rows = h5_read_rows;
  fh_h5_quiet q;
  fh_h5_quiet_begin(&q);
  int rc = open_all(s, src);
  fh_h5_quiet_end(&q);
  return rc;
}
