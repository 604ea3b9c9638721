/* fedhpc encode DECK [--set ...]: a model fedhpc trained becomes a frozen
 * encoder, and the deck's data set becomes a feature file (docs/features.md)
 * for FST-CBDG and any algorithm that learns on features.
 *
 *   encoder     the layers of encode.model before its last Linear (the
 *               extractor of cnn1..cnn5, the hidden layers of an mlp), built
 *               from the training deck stored in model.h5 and run with an
 *               identity [F, F] head in place of the classifier, so the
 *               model's own forward returns the F extractor features exactly
 *   inputs      the deck's [data] pool, raw rows normalised as the encoder's
 *               training deck normalised its own (the encoder's fixed
 *               preprocessing, as CLIP's): rows encode.skip_train .. N-1 of
 *               the train pool, or with data.server_fraction > 0 the train
 *               rows not held out for the server, and every test row
 *   features    z = normalise(f - mu), mu the mean feature of the labelled
 *               rows (encode.center; 0 without), f the extractor's output
 *   classes     t_c = normalise(mean of z over the labelled rows of class
 *               c): the class prototypes stand in for CLIP's text
 *               embeddings; the logit scale is encode.logit_scale
 *   labelled    the encoder's training rows (its stored deck's data); or,
 *   rows        with data.server_fraction > 0 in this deck, the rows it holds
 *               out (data/server_split.h: the rows `fedhpc pretrain` trains
 *               on with the same fraction and run.seed), which then leave the
 *               encoded train pool: a labelled split disjoint from the
 *               federated rows
 *
 * The pool is encoded rather than each client's rows: every row once, and the
 * partition (label skew, clients) stays a choice of the run that reads the
 * file. The work is spread over ranks, each a contiguous block of rows; the
 * forward runs on chunks aligned to multiples of encode.batch in the whole
 * pool (a rank's partial chunks padded with zero rows), so every row goes
 * through the same batch position and size on any rank count, and the sums
 * (mu, the class means) are fixed-point: the file is the same bit for bit
 * whatever the rank count. Ranks then write their blocks in turn into the
 * file rank 0 laid out, under a .partial name renamed when whole. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/paths.h"
#include "data/features.h"
#include "data/partition.h"
#include "data/server_split.h"
#include "data/source.h"
#include "io/h5util.h"
#include "nn/model.h"

const fh_key_spec fh_encode_keys[] = {
    {"encode.model", FH_T_STRING, "", 0, 0, NULL,
     "fedhpc encode: the model.h5 whose layers before the last Linear are the frozen encoder"},
    {"encode.out", FH_T_STRING, "", 0, 0, NULL,
     "fedhpc encode: the feature file to write; empty = output.dir/NAME/features.h5"},
    {"encode.skip_train", FH_T_INT, "0", 0, 9.2e18, NULL,
     "fedhpc encode: train rows at the start of the pool left out (e.g. the part the encoder was trained on); "
     "with data.server_fraction the held-out rows are left out instead and give the class embeddings"},
    {"encode.center", FH_T_BOOL, "true", 0, 0, NULL,
     "fedhpc encode: subtract the mean feature of the encoder's training data before normalising"},
    {"encode.logit_scale", FH_T_REAL, "20", 1e-6, 1e6, NULL,
     "fedhpc encode: the file's logit_scale (zero-shot logits = scale x cosine to the class embedding)"},
    {"encode.batch", FH_T_INT, "256", 1, 1 << 20, NULL, "fedhpc encode: rows per forward pass"},
    FH_KEYS_END};

#define FIX_SCALE 4294967296.0 /* 2^32: fixed-point sums of features */

/* ---- the encoder ------------------------------------------------------------------ */

typedef struct {
  fh_config *cfg;  /* the training deck stored in model.h5             */
  fh_model *m;     /* the architecture with an identity [F, F] head     */
  int F, B;        /* features, batch                                   */
  int c, h, w, dim;/* input shape                                       */
  float scale;     /* the encoder's preprocessing:                      */
  float *mean, *std; /*  x = (raw / scale - mean[ch]) / std[ch]         */
  float *xb;       /* [B, dim]                                          */
  char arch[32];
} encoder;

static void encoder_free(encoder *E) {
  if (E->m) fh_model_free(E->m);
  if (E->cfg) fh_config_free(E->cfg);
  free(E->mean);
  free(E->std);
  free(E->xb);
  memset(E, 0, sizeof *E);
}

/* Root attribute `name` of model.h5 as a newly allocated string. */
static int model_attr_str(hid_t f, const char *path, const char *name, char **out) {
  *out = NULL;
  if (H5Aexists(f, name) <= 0)
    return FH_FAIL(FH_ERR_DATA, "encode.model = '%s' has no attribute %s; is it a model.h5 fedhpc wrote?", path, name);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = H5Aget_type(a);
  size_t len = H5Tget_size(t);
  int rc = 0;
  if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) > 0) {
    rc = FH_FAIL(FH_ERR_DATA, "encode.model = '%s': attribute %s is not a fixed-length string", path, name);
  } else {
    *out = fh_calloc(len + 1, 1);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, len + 1);
    H5Tset_strpad(mt, H5T_STR_NULLTERM);
    if (H5Aread(a, mt, *out) < 0)
      rc = FH_FAIL(FH_ERR_DATA, "encode.model = '%s': cannot read attribute %s", path, name);
    H5Tclose(mt);
  }
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

/* /group/name of model.h5 into dst [numel]. */
static int read_tensor(hid_t f, const char *path, const char *group, const fh_param_view *v, float *dst) {
  char obj[128];
  snprintf(obj, sizeof obj, "%s/%s", group, v->name);
  if (H5Lexists(f, group, H5P_DEFAULT) <= 0 || H5Lexists(f, obj, H5P_DEFAULT) <= 0)
    return FH_FAIL(FH_ERR_DATA, "encode.model = '%s': no dataset /%s (the deck stored in it builds another model)",
                   path, obj);
  hid_t d = H5Dopen2(f, obj, H5P_DEFAULT), sp = H5Dget_space(d);
  hssize_t n = H5Sget_simple_extent_npoints(sp);
  int rc = 0;
  if (n != (hssize_t)v->numel)
    rc = FH_FAIL(FH_ERR_DATA, "encode.model = '%s': /%s has %lld values, the architecture expects %zu", path, obj,
                 (long long)n, v->numel);
  else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    rc = FH_FAIL(FH_ERR_DATA, "encode.model = '%s': cannot read /%s", path, obj);
  H5Sclose(sp);
  H5Dclose(d);
  return rc;
}

/* The training deck (a string) as a config, through a private temporary file. */
static int load_stored_deck(const char *ini, const char *path, fh_config **out) {
  char tmp[] = "/tmp/fedhpc-encoder-deck-XXXXXX";
  int fd = mkstemp(tmp);
  if (fd < 0) return FH_FAIL(FH_ERR_OUTPUT, "encode: cannot create a temporary file in /tmp: %s", strerror(errno));
  size_t len = strlen(ini);
  ssize_t wrote = write(fd, ini, len);
  close(fd);
  int rc = 0;
  if (wrote != (ssize_t)len) {
    rc = FH_FAIL(FH_ERR_OUTPUT, "encode: cannot write the temporary file %s", tmp);
  } else {
    const fh_key_spec *tables[64];
    int nt = fh_all_key_tables(tables, 64);
    rc = fh_config_load(out, tmp, NULL, 0, tables, nt);
    if (rc) fh_error_prefix("encode.model = '%s': its stored training deck: ", path);
  }
  unlink(tmp);
  return rc;
}

/* data.mean / data.std of a deck: 1 or c numbers, or none (*n = 0). */
static int parse_list(const fh_config *cfg, const char *key, int c, float *out, int *n) {
  const char *p = fh_cfg_str(cfg, key);
  *n = 0;
  while (*p) {
    char *end;
    double v = strtod(p, &end);
    if (end == p || *n >= c)
      return FH_FAIL(FH_ERR_CONFIG, "%s = '%s' in the encoder's deck: expected 1 or %d numbers", key,
                     fh_cfg_str(cfg, key), c);
    out[(*n)++] = (float)v;
    p = end;
    while (*p == ' ' || *p == ',') p++;
  }
  return 0;
}

static int encoder_open(encoder *E, const char *path, int batch) {
  memset(E, 0, sizeof *E);
  E->B = batch;
  if (path[0] == '\0') return FH_FAIL(FH_ERR_CONFIG, "encode.model is empty; give the model.h5 of the encoder");
  struct stat st;
  if (stat(path, &st) != 0 || H5Fis_hdf5(path) <= 0)
    return FH_FAIL(FH_ERR_DATA, "encode.model = '%s': %s", path,
                   stat(path, &st) != 0 ? "no such file" : "not an HDF5 file");
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return FH_FAIL(FH_ERR_DATA, "encode.model = '%s': cannot open", path);
  char *ini = NULL, *arch = NULL;
  long long shape[3] = {0, 0, 0}, C = 0;
  int rc = model_attr_str(f, path, "config", &ini);
  if (rc == 0) rc = model_attr_str(f, path, "arch", &arch);
  if (rc == 0) {
    hid_t a = H5Aexists(f, "input_shape") > 0 ? H5Aopen(f, "input_shape", H5P_DEFAULT) : H5I_INVALID_HID;
    hid_t b = H5Aexists(f, "num_classes") > 0 ? H5Aopen(f, "num_classes", H5P_DEFAULT) : H5I_INVALID_HID;
    if (a < 0 || b < 0 || H5Aread(a, H5T_NATIVE_LLONG, shape) < 0 || H5Aread(b, H5T_NATIVE_LLONG, &C) < 0)
      rc = FH_FAIL(FH_ERR_DATA, "encode.model = '%s': cannot read attributes input_shape and num_classes", path);
    if (a >= 0) H5Aclose(a);
    if (b >= 0) H5Aclose(b);
  }
  if (rc == 0) rc = load_stored_deck(ini, path, &E->cfg);
  if (rc == 0) {
    snprintf(E->arch, sizeof E->arch, "%s", arch);
    E->c = (int)shape[0], E->h = (int)shape[1], E->w = (int)shape[2];
    E->dim = E->c * E->h * E->w;
    /* once with its classes to learn F, then with an F-wide identity head */
    fh_model *probe = NULL;
    rc = fh_model_create(&probe, E->cfg, E->c, E->h, E->w, (int)C, 1);
    if (rc == 0) {
      E->F = fh_model_feature_dim(probe);
      if (fh_model_header_first_view(probe) == 0)
        rc = FH_FAIL(FH_ERR_CONFIG, "encode.model = '%s' is a single Linear layer (model.hidden empty): it has no "
                                    "feature extractor to encode with", path);
      fh_model_free(probe);
    }
  }
  if (rc == 0) rc = fh_model_create(&E->m, E->cfg, E->c, E->h, E->w, E->F, E->B);
  if (rc == 0) {
    const int head = fh_model_header_first_view(E->m);
    float *p = fh_model_params(E->m);
    for (int i = 0; i < fh_model_nviews(E->m) && rc == 0; i++) {
      const fh_param_view *v = fh_model_view(E->m, i);
      if (i < head) rc = read_tensor(f, path, "params", v, p + v->offset);
      else memset(p + v->offset, 0, v->numel * sizeof(float));
    }
    const fh_param_view *W = fh_model_view(E->m, head);
    for (int k = 0; rc == 0 && k < E->F; k++) p[W->offset + (size_t)k * E->F + k] = 1.0f; /* identity head */
    for (int i = 0; i < fh_model_nbuffer_views(E->m) && rc == 0; i++) {
      const fh_param_view *v = fh_model_buffer_view(E->m, i);
      rc = read_tensor(f, path, "buffers", v, fh_model_buffers(E->m) + v->offset);
    }
  }
  H5Fclose(f);
  free(ini);
  free(arch);
  if (rc == 0) E->xb = fh_malloc(sizeof(float) * (size_t)E->B * (size_t)E->dim);
  return rc;
}

/* The encoder's preprocessing: its training source's value scale, and its
 * deck's data.mean / data.std, else that source's usual ones. */
static int encoder_norm(encoder *E, const fh_source *train_src) {
  E->scale = train_src->value_scale;
  E->mean = fh_malloc(sizeof(float) * (size_t)E->c);
  E->std = fh_malloc(sizeof(float) * (size_t)E->c);
  float *m = fh_malloc(sizeof(float) * (size_t)E->c), *s = fh_malloc(sizeof(float) * (size_t)E->c);
  int nm, ns;
  int rc = parse_list(E->cfg, "data.mean", E->c, m, &nm);
  if (rc == 0) rc = parse_list(E->cfg, "data.std", E->c, s, &ns);
  for (int ch = 0; ch < E->c && rc == 0; ch++) {
    E->mean[ch] = nm ? m[nm == 1 ? 0 : ch] : train_src->mean[ch];
    E->std[ch] = ns ? s[ns == 1 ? 0 : ch] : train_src->std[ch];
  }
  free(m);
  free(s);
  return rc;
}

/* Raw rows first .. first+n-1 of the pool (global row r is source row
 * map[r], ascending, or r + off without a map) through the encoder, into out
 * [n, F]. Chunks of B aligned in [0, total); rows of a chunk outside
 * [first, first+n) are zeros. */
static int encode_block(encoder *E, fh_source *src, int split, const int64_t *map, int64_t off, int64_t total,
                        int64_t first, int64_t n, float *out) {
  const int64_t end = first + n, B = E->B;
  const size_t plane = (size_t)E->h * (size_t)E->w;
  int64_t *rows = fh_malloc(sizeof(int64_t) * (size_t)B);
  int rc = 0;
  for (int64_t c = first / B * B; c < end && rc == 0; c += B) {
    const int64_t L = total - c < B ? total - c : B, lo = c > first ? c : first, hi = c + L < end ? c + L : end;
    memset(E->xb, 0, sizeof(float) * (size_t)L * (size_t)E->dim);
    for (int64_t r = lo; r < hi; r++) rows[r - lo] = map ? map[r] : r + off;
    float *dst = E->xb + (size_t)(lo - c) * (size_t)E->dim;
    rc = src->read_rows(src, split, rows, hi - lo, dst);
    for (int64_t r = 0; r < hi - lo && rc == 0; r++)
      for (int ch = 0; ch < E->c; ch++) {
        float *p = dst + (size_t)r * E->dim + (size_t)ch * plane;
        for (size_t i = 0; i < plane; i++) p[i] = (p[i] / E->scale - E->mean[ch]) / E->std[ch];
      }
    if (rc) break;
    const float *y = fh_model_forward(E->m, E->xb, (int)L, 0);
    memcpy(out + (size_t)(lo - first) * E->F, y + (size_t)(lo - c) * E->F, sizeof(float) * (size_t)(hi - lo) * E->F);
  }
  free(rows);
  return rc;
}

/* sum [n] += round(x * 2^32); FH_ERR_RUNTIME when a value would overflow. */
static int fix_add(int64_t *sum, const float *x, int n, double bound) {
  for (int j = 0; j < n; j++) {
    if (!(fabs((double)x[j]) < bound))
      return FH_FAIL(FH_ERR_DIVERGED, "encode: a feature is %g; the encoder's outputs are not finite or too large to "
                                      "average", (double)x[j]);
    sum[j] += (int64_t)nearbyint((double)x[j] * FIX_SCALE);
  }
  return 0;
}

/* z [n, F] = normalise(z - mu) row by row; the first bad row or -1. */
static int64_t center_normalise(float *z, int64_t n, int F, const float *mu) {
  for (int64_t i = 0; i < n && mu; i++)
    for (int j = 0; j < F; j++) z[(size_t)i * F + j] -= mu[j];
  return fh_features_normalise_rows(z, n, F);
}

/* ---- the file --------------------------------------------------------------------- */

static hid_t create_ds(hid_t f, const char *name, hid_t type, int rank, hsize_t d0, hsize_t d1) {
  hsize_t dims[2] = {d0, d1};
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t d = H5Dcreate2(f, name, type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  H5Sclose(sp);
  return d;
}

/* Why a write of path failed, in words. */
static const char *write_cause(const char *path) {
  const char *c = fh_write_cause(path, errno);
  return c[0] ? c : "HDF5 write failed";
}

/* Rank 0: the file with every dataset sized, the labels, class embeddings,
 * names and attributes written; the feature rows follow from each rank. */
static int write_layout(const char *path, const fh_source *src, const int32_t *ytr, int64_t skip, int64_t nsrv,
                        int64_t ntr, int64_t nte, int F, const float *T, double scale, const char *encoder_text,
                        const char *ini) {
  const int C = src->num_classes;
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) {
    const char *c = fh_write_cause(path, errno);
    return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create: %s", path, c[0] ? c : "check that the folder exists and is writable");
  }
  int ok = 1;
  hid_t d;
  ok &= (d = create_ds(f, "train/x", H5T_IEEE_F32LE, 2, (hsize_t)ntr, (hsize_t)F)) >= 0 && H5Dclose(d) >= 0;
  ok &= (d = create_ds(f, "test/x", H5T_IEEE_F32LE, 2, (hsize_t)nte, (hsize_t)F)) >= 0 && H5Dclose(d) >= 0;
  ok &= (d = create_ds(f, "train/y", H5T_STD_I32LE, 1, (hsize_t)ntr, 0)) >= 0 &&
        (ntr == 0 ||
         H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ytr) >= 0) &&
        H5Dclose(d) >= 0;
  ok &= (d = create_ds(f, "test/y", H5T_STD_I32LE, 1, (hsize_t)nte, 0)) >= 0 &&
        (nte == 0 || H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, src->labels[FH_SPLIT_TEST]) >= 0) &&
        H5Dclose(d) >= 0;
  ok &= (d = create_ds(f, "class_embeddings", H5T_IEEE_F32LE, 2, (hsize_t)C, (hsize_t)F)) >= 0 &&
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, T) >= 0 && H5Dclose(d) >= 0;
  hid_t vs = H5Tcopy(H5T_C_S1);
  H5Tset_size(vs, H5T_VARIABLE);
  H5Tset_cset(vs, H5T_CSET_UTF8);
  char **names = fh_calloc((size_t)C, sizeof(char *));
  for (int c = 0; c < C; c++) {
    names[c] = fh_malloc(16);
    snprintf(names[c], 16, "%d", c);
  }
  ok &= (d = create_ds(f, "class_names", vs, 1, (hsize_t)C, 0)) >= 0 &&
        H5Dwrite(d, vs, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) >= 0 && H5Dclose(d) >= 0;
  for (int c = 0; c < C; c++) free(names[c]);
  free(names);
  H5Tclose(vs);
  int rc = ok ? 0 : FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write the datasets: %s", path, write_cause(path));
  char name[128];
  snprintf(name, sizeof name, "%s-features", src->name);
  if (rc == 0) rc = fh_h5_attr_str(f, "name", name);
  if (rc == 0) rc = fh_h5_attr_str(f, "encoder", encoder_text);
  if (rc == 0) rc = fh_h5_attr_double(f, "logit_scale", scale);
  if (rc == 0) rc = fh_h5_attr_int(f, "num_classes", C);
  if (rc == 0) rc = fh_h5_attr_int(f, "skip_train", skip);
  if (rc == 0) rc = fh_h5_attr_int(f, "server_rows", nsrv); /* left out of /train: the labelled split */
  if (rc == 0) rc = fh_h5_attr_str(f, "config", ini);
  if (rc == 0) return fh_h5_close(f, path); /* on failure, left open (io/h5util.h) */
  return rc;
}

/* Rows first .. first+n-1 of the dataset name <- x [n, F]. */
static int write_rows(const char *path, const char *name, int64_t first, int64_t n, int F, const float *x) {
  if (n == 0) return 0;
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot open for writing", path);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT), fs = H5Dget_space(d);
  hsize_t start[2] = {(hsize_t)first, 0}, cnt[2] = {(hsize_t)n, (hsize_t)F};
  hid_t ms = H5Screate_simple(2, cnt, NULL);
  int ok = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 &&
           H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, x) >= 0;
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  if (!ok) /* left open: a failed write cannot be closed (io/h5util.h) */
    return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write rows %lld.. of %s: %s", path, (long long)first, name,
                   write_cause(path));
  return fh_h5_close(f, path);
}

/* ---- the command ------------------------------------------------------------------ */

static int out_path(const fh_config *cfg, char *path, size_t len) {
  const char *out = fh_cfg_str(cfg, "encode.out");
  if (out[0]) {
    snprintf(path, len, "%s", out);
    return 0;
  }
  char base[256];
  FH_TRY(fh_run_name(cfg, "encode", base, sizeof base));
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", fh_cfg_str(cfg, "output.dir"), base);
  if (fh_mkdir_p(dir) != 0)
    return FH_FAIL(FH_ERR_OUTPUT, "output.dir = '%s': cannot create '%s': %s; set output.dir or encode.out",
                   fh_cfg_str(cfg, "output.dir"), dir, strerror(errno));
  snprintf(path, len, "%s/features.h5", dir);
  return 0;
}

/* What the steps of one encoding share. */
typedef struct {
  const fh_config *cfg;
  MPI_Comm comm;
  int rank, nranks, F, C, center;
  const char *model_path;
  encoder E;
  fh_source *psrc, *src; /* the encoder's training data, the deck's data */
  int64_t skip, ntr, nte, tb, te, sb, se;
  int64_t *srv, nsrv; /* data.server_fraction: the held-out train rows [nsrv], ascending (NULL: none) */
  int64_t *keep;      /*   .. and the others [ntr], the encoded train pool       */
  int32_t *ytr;       /* [ntr] the encoded train rows' labels                   */
  float *zp, *ztr, *zte, *T, *mu;
  int64_t *sums;
} encode_job;

/* data.server_fraction > 0: the held-out train rows (the labelled split the
 * class embeddings come from) and the others (the encoded pool), the same on
 * every rank; a warning when the encoder's stored deck held out other rows. */
static int server_split(encode_job *J) {
  const fh_config *cfg = J->cfg;
  const fh_source *src = J->src;
  const double f = fh_cfg_real(cfg, "data.server_fraction");
  if (f <= 0) return 0;
  if (J->skip > 0)
    return FH_FAIL(FH_ERR_CONFIG, "encode.skip_train = %lld and data.server_fraction = %g both pick the labelled rows; "
                                  "set one of them", (long long)J->skip, f);
  const int64_t n = src->n[FH_SPLIT_TRAIN];
  FH_TRY(fh_server_rows(cfg, (uint64_t)fh_cfg_int(cfg, "run.seed"), src->labels[FH_SPLIT_TRAIN], n, src->num_classes,
                        &J->srv, &J->nsrv));
  if (J->nsrv == 0 || J->nsrv == n)
    return FH_FAIL(FH_ERR_CONFIG, "data.server_fraction = %g holds out %lld of the %lld train rows of %s; it must "
                                  "leave rows on both sides", f, (long long)J->nsrv, (long long)n, src->name);
  J->keep = fh_malloc(sizeof(int64_t) * (size_t)(n - J->nsrv));
  for (int64_t i = 0, j = 0, k = 0; i < n; i++)
    if (j < J->nsrv && J->srv[j] == i) j++;
    else J->keep[k++] = i;
  const fh_config *ec = J->E.cfg;
  if (fh_cfg_real(ec, "data.server_fraction") != f || fh_cfg_int(ec, "run.seed") != fh_cfg_int(cfg, "run.seed") ||
      strcmp(fh_cfg_str(ec, "data.source"), fh_cfg_str(cfg, "data.source")) != 0)
    fh_warn("encode: the encoder %s was trained with data.source = %s, data.server_fraction = %g, run.seed = %lld, "
            "this deck has %s, %g, %lld: the class embeddings' rows are not the rows the encoder was trained on",
            J->model_path, fh_cfg_str(ec, "data.source"), fh_cfg_real(ec, "data.server_fraction"),
            fh_cfg_int(ec, "run.seed"), fh_cfg_str(cfg, "data.source"), f, fh_cfg_int(cfg, "run.seed"));
  return 0;
}

/* The encoder, both sources, and whether they fit each other. Errors agreed. */
static int encode_open(encode_job *J) {
  const fh_config *cfg = J->cfg;
  int rc = encoder_open(&J->E, J->model_path, (int)fh_cfg_int(cfg, "encode.batch"));
  rc = fh_error_agree(J->comm, rc);
  if (rc == 0) rc = fh_error_agree(J->comm, fh_source_open(&J->psrc, J->E.cfg));
  if (rc == 0) rc = fh_error_agree(J->comm, fh_source_open(&J->src, cfg));
  if (rc == 0) rc = fh_error_agree(J->comm, encoder_norm(&J->E, J->psrc));
  const fh_source *src = J->src, *psrc = J->psrc;
  const encoder *E = &J->E;
  if (rc == 0 && (src->c != E->c || src->h != E->h || src->w != E->w))
    rc = FH_FAIL(FH_ERR_CONFIG, "the deck's data (%s) are %dx%dx%d samples but the encoder %s takes %dx%dx%d; encode "
                                "data of the encoder's shape",
                 src->name, src->c, src->h, src->w, J->model_path, E->c, E->h, E->w);
  if (rc == 0 && src->num_classes != psrc->num_classes)
    rc = FH_FAIL(FH_ERR_CONFIG, "the deck's data (%s) have %d classes but the encoder's training data (%s) have %d; "
                                "the class embeddings come from those, so the classes must be the same",
                 src->name, src->num_classes, psrc->name, psrc->num_classes);
  J->skip = rc == 0 ? fh_cfg_int(cfg, "encode.skip_train") : 0;
  if (rc == 0 && J->skip >= src->n[FH_SPLIT_TRAIN])
    rc = FH_FAIL(FH_ERR_CONFIG, "encode.skip_train = %lld leaves none of the %lld train rows of %s", (long long)J->skip,
                 (long long)src->n[FH_SPLIT_TRAIN], src->name);
  if (rc == 0) rc = fh_error_agree(J->comm, server_split(J));
  return rc;
}

/* The encoder's training rows: their mean feature mu (encode.center), then
 * the class prototypes T [C, F], centred and normalised. Errors agreed. */
static int class_embeddings(encode_job *J) {
  /* the labelled rows: the deck's server rows, or the encoder's training pool */
  fh_source *psrc = J->srv ? J->src : J->psrc;
  const int64_t *map = J->srv;
  const int F = J->F, C = J->C;
  MPI_Comm comm = J->comm;
  int64_t b, e;
  const int64_t np_ = J->srv ? J->nsrv : psrc->n[FH_SPLIT_TRAIN];
  fh_block_range(np_, J->nranks, J->rank, &b, &e);
  J->zp = fh_malloc(sizeof(float) * (size_t)((e - b) ? (e - b) : 1) * F);
  FH_TRY(fh_error_agree(comm, encode_block(&J->E, psrc, FH_SPLIT_TRAIN, map, 0, np_, b, e - b, J->zp)));
  int64_t *sums = J->sums = fh_calloc((size_t)(C + 1) * F + C, sizeof(int64_t)); /* [F] mu, [C, F] class sums, [C] counts */
  int rc = 0;
  if (J->center) {
    const double bound = ldexp(1.0, 62) / FIX_SCALE / (double)(np_ + 1);
    for (int64_t i = 0; i < e - b && rc == 0; i++) rc = fix_add(sums, J->zp + (size_t)i * F, F, bound);
    FH_TRY(fh_error_agree(comm, rc));
    MPI_Allreduce(MPI_IN_PLACE, sums, F, MPI_INT64_T, MPI_SUM, comm);
    J->mu = fh_malloc(sizeof(float) * (size_t)F);
    for (int j = 0; j < F; j++) J->mu[j] = (float)((double)sums[j] / FIX_SCALE / (double)np_);
  }
  int64_t bad = center_normalise(J->zp, e - b, F, J->mu);
  if (bad >= 0)
    rc = FH_FAIL(FH_ERR_DATA, "encode: the feature of row %lld of %s is zero (the encoder's output equals the mean "
                              "feature); cannot normalise it", (long long)(b + bad), psrc->name);
  FH_TRY(fh_error_agree(comm, rc));
  int64_t *csum = sums + F, *count = sums + (size_t)(C + 1) * F;
  for (int64_t i = 0; i < e - b; i++) {
    const int y = psrc->labels[FH_SPLIT_TRAIN][map ? map[b + i] : b + i];
    fix_add(csum + (size_t)y * F, J->zp + (size_t)i * F, F, 2.0);
    count[y]++;
  }
  MPI_Allreduce(MPI_IN_PLACE, csum, C * F + C, MPI_INT64_T, MPI_SUM, comm);
  float *T = J->T = fh_malloc(sizeof(float) * (size_t)C * F);
  for (int c = 0; c < C && rc == 0; c++) {
    if (count[c] == 0)
      rc = FH_FAIL(FH_ERR_DATA, "encode: class %d has no row in the encoder's training data (%s); it cannot have a "
                                "class embedding", c, psrc->name);
    for (int j = 0; j < F; j++) T[(size_t)c * F + j] = (float)((double)csum[(size_t)c * F + j] / FIX_SCALE / count[c]);
  }
  if (rc == 0 && fh_features_normalise_rows(T, C, F) >= 0)
    rc = FH_FAIL(FH_ERR_DATA, "encode: a class's mean feature is zero; cannot normalise it");
  return fh_error_agree(comm, rc);
}

/* The deck's pool: rows skip.. of train, every test row, each rank its block,
 * centred and normalised. Errors agreed. */
static int encode_pool(encode_job *J) {
  const fh_source *src = J->src;
  const int F = J->F;
  J->ntr = src->n[FH_SPLIT_TRAIN] - (J->srv ? J->nsrv : J->skip), J->nte = src->n[FH_SPLIT_TEST];
  fh_block_range(J->ntr, J->nranks, J->rank, &J->tb, &J->te);
  fh_block_range(J->nte, J->nranks, J->rank, &J->sb, &J->se);
  J->ztr = fh_malloc(sizeof(float) * (size_t)((J->te - J->tb) ? (J->te - J->tb) : 1) * F);
  J->zte = fh_malloc(sizeof(float) * (size_t)((J->se - J->sb) ? (J->se - J->sb) : 1) * F);
  int rc = encode_block(&J->E, J->src, FH_SPLIT_TRAIN, J->keep, J->skip, J->ntr, J->tb, J->te - J->tb, J->ztr);
  if (rc == 0) rc = encode_block(&J->E, J->src, FH_SPLIT_TEST, NULL, 0, J->nte, J->sb, J->se - J->sb, J->zte);
  if (rc == 0 && (center_normalise(J->ztr, J->te - J->tb, F, J->mu) >= 0 ||
                  center_normalise(J->zte, J->se - J->sb, F, J->mu) >= 0))
    rc = FH_FAIL(FH_ERR_DATA, "encode: a feature of %s is zero after centring; cannot normalise it", src->name);
  return fh_error_agree(J->comm, rc);
}

/* The feature file: rank 0 writes its layout under a .partial name, the ranks
 * their rows one after another, then rank 0 renames it. Errors agreed. */
static int write_feature_file(encode_job *J) {
  const fh_config *cfg = J->cfg;
  MPI_Comm comm = J->comm;
  const int rank = J->rank, F = J->F;
  char path[4200], partial[4300], text[512];
  int rc = 0;
  if (rank == 0) rc = out_path(cfg, path, sizeof path);
  FH_TRY(fh_error_agree(comm, rc));
  MPI_Bcast(path, sizeof path, MPI_CHAR, 0, comm);
  snprintf(partial, sizeof partial, "%s.partial", path);
  snprintf(text, sizeof text, "fedhpc encode: the %s extractor (%d features) of %s%s%s", J->E.arch, F, J->model_path,
           J->center ? ", centred on the labelled rows' mean feature" : "",
           J->srv ? "; class embeddings from the data.server_fraction rows, left out of /train" : "");
  if (rank == 0) {
    char *ini = fh_config_dump(cfg);
    int32_t *ytr = fh_malloc(sizeof(int32_t) * (size_t)(J->ntr ? J->ntr : 1));
    for (int64_t i = 0; i < J->ntr; i++)
      ytr[i] = J->src->labels[FH_SPLIT_TRAIN][J->keep ? J->keep[i] : J->skip + i];
    rc = write_layout(partial, J->src, ytr, J->skip, J->nsrv, J->ntr, J->nte, F, J->T,
                      fh_cfg_real(cfg, "encode.logit_scale"), text, ini);
    free(ytr);
    free(ini);
  }
  rc = fh_error_agree(comm, rc);
  for (int r = 0; r < J->nranks && rc == 0; r++) { /* one writer at a time: serial HDF5 */
    if (rank == r) {
      rc = write_rows(partial, "train/x", J->tb, J->te - J->tb, F, J->ztr);
      if (rc == 0) rc = write_rows(partial, "test/x", J->sb, J->se - J->sb, F, J->zte);
    }
    rc = fh_error_agree(comm, rc);
  }
  if (rc == 0 && rank == 0 && rename(partial, path) != 0)
    rc = FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s: %s", partial, path, strerror(errno));
  rc = fh_error_agree(comm, rc);
  if (rc != 0 && rank == 0) remove(partial); /* no half-written feature file is left */
  if (rc == 0)
    fh_info("encode: wrote %s: %lld train and %lld test rows of %d features, %d class embeddings, logit scale %g",
            path, (long long)J->ntr, (long long)J->nte, F, J->C, fh_cfg_real(cfg, "encode.logit_scale"));
  return rc;
}

static int encode(const fh_config *cfg, MPI_Comm comm) {
  encode_job J;
  memset(&J, 0, sizeof J);
  J.cfg = cfg;
  J.comm = comm;
  MPI_Comm_rank(comm, &J.rank);
  MPI_Comm_size(comm, &J.nranks);
  J.model_path = fh_cfg_str(cfg, "encode.model");
  J.center = fh_cfg_bool(cfg, "encode.center");
  int rc = encode_open(&J);
  if (rc == 0) {
    J.F = J.E.F, J.C = J.src->num_classes;
    if (J.srv)
      fh_info("encode: %s extractor of %s (%d features) on %s; class embeddings from its %lld server rows "
              "(data.server_fraction = %g), which leave the encoded train pool; %d ranks",
              J.E.arch, J.model_path, J.F, J.src->name, (long long)J.nsrv, fh_cfg_real(cfg, "data.server_fraction"),
              J.nranks);
    else
      fh_info("encode: %s extractor of %s (%d features) on %s; class embeddings from %s (%lld rows); %d ranks",
              J.E.arch, J.model_path, J.F, J.src->name, J.psrc->name, (long long)J.psrc->n[FH_SPLIT_TRAIN], J.nranks);
    rc = class_embeddings(&J);
  }
  if (rc == 0) rc = encode_pool(&J);
  if (rc == 0) rc = write_feature_file(&J);
  free(J.zp);
  free(J.ztr);
  free(J.zte);
  free(J.T);
  free(J.mu);
  free(J.sums);
  free(J.srv);
  free(J.keep);
  fh_source_close(J.psrc);
  fh_source_close(J.src);
  encoder_free(&J.E);
  return rc;
}

int fh_cmd_encode(int argc, char **argv) {
  fh_config *cfg = NULL;
  FH_TRY(fh_load_config_from_args(argc, argv, 1, &cfg, NULL, NULL));
  int rc = encode(cfg, MPI_COMM_WORLD);
  fh_config_free(cfg);
  return rc;
}
