/* The IDX source: MNIST, Fashion-MNIST and EMNIST as their authors ship them,
 * four files in the folder data.path, each plain or gzip-compressed (.gz):
 *   train-images-idx3-ubyte  train-labels-idx1-ubyte
 *   t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte
 * or, with data.emnist_split = S, emnist-S-train-images-idx3-ubyte, ...,
 * emnist-S-test-labels-idx1-ubyte.
 *
 * IDX: a 4-byte magic (0, 0, type 0x08 = unsigned byte, number of dimensions),
 * then each dimension as a big-endian uint32, then the values row-major.
 * Images are [N, H, W] (magic 0x00000803), labels [N] (0x00000801).
 *
 * Labels are read whole at open and checked against the classes of the set
 * (EMNIST letters count 1..26 in the file, 0..25 here). Images are read on
 * demand: plain files with pread of consecutive rows, gzip files by
 * decompressing forward to each row (a backward step restarts the stream).
 * EMNIST stores each image transposed; rows are transposed back so that its
 * characters stand upright, as MNIST's and FEMNIST's do. Pixels 0..255. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"
#include "data/source_impl.h"

#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u
/* Bytes per pread / gzread while reading rows. */
#define READ_CHUNK ((size_t)1 << 20)

typedef struct {
  char path[PATH_MAX];
  const char *base; /* file name within path, for messages */
  int gz;
  int fd;      /* plain */
  gzFile gzf;  /* gzip  */
  int64_t pos; /* gzip: uncompressed offset of the stream */
} idx_file;

typedef struct {
  idx_file images[2];
  int transpose; /* EMNIST */
  int h, w;
  unsigned char *buf; /* [READ_CHUNK] or one row */
  size_t buf_len;
} idx_source;

typedef struct {
  const char *name;
  int classes, first_label;
} emnist_split;

static const emnist_split EMNIST[] = {{"byclass", 62, 0}, {"bymerge", 47, 0}, {"balanced", 47, 0},
                                      {"letters", 26, 1}, {"digits", 10, 0},  {"mnist", 10, 0}};

static void file_close(idx_file *f) {
  if (f->gzf) gzclose(f->gzf);
  if (f->fd >= 0) close(f->fd);
  f->gzf = NULL;
  f->fd = -1;
}

/* Finds `stem` or `stem.gz` in dir and opens it. */
static int file_open(idx_file *f, const char *dir, const char *stem) {
  memset(f, 0, sizeof *f);
  f->fd = -1;
  char gz[PATH_MAX];
  if (fh_path_join(f->path, sizeof f->path, dir, stem) != 0 || snprintf(gz, sizeof gz, "%s.gz", f->path) >= (int)sizeof gz)
    return FH_FAIL(FH_ERR_DATA, "data.path = '%s': path too long", dir);
  if (!fh_file_exists(f->path)) {
    if (!fh_file_exists(gz))
      return FH_FAIL(FH_ERR_DATA, "data.path = '%s': no %s or %s.gz (fetch them with scripts/fetch_datasets.sh)", dir,
                     stem, stem);
    memcpy(f->path, gz, sizeof gz);
    f->gz = 1;
  }
  const char *slash = strrchr(f->path, '/');
  f->base = slash ? slash + 1 : f->path;
  if (f->gz) {
    f->gzf = gzopen(f->path, "rb");
    if (f->gzf) gzbuffer(f->gzf, 1 << 18);
  } else {
    f->fd = open(f->path, O_RDONLY);
  }
  if (f->gz ? !f->gzf : f->fd < 0) return FH_FAIL(FH_ERR_DATA, "%s: cannot open: %s", f->path, strerror(errno));
  return 0;
}

/* Reads len bytes at uncompressed offset off. */
static int file_read(idx_file *f, void *buf, size_t len, int64_t off) {
  if (!f->gz) return fh_pread_full(f->fd, f->path, buf, len, off);
  if (off != f->pos) {
    if (gzseek(f->gzf, (z_off_t)off, SEEK_SET) < 0) {
      int err;
      const char *why = gzerror(f->gzf, &err);
      return FH_FAIL(FH_ERR_DATA, "%s: cannot reach byte %lld of the uncompressed data (%s; truncated?)", f->path,
                     (long long)off, err == Z_OK ? "it ends first" : why);
    }
    f->pos = off;
  }
  char *p = buf;
  while (len > 0) {
    unsigned part = len > (1u << 30) ? 1u << 30 : (unsigned)len;
    int got = gzread(f->gzf, p, part);
    if (got <= 0) {
      int err;
      const char *why = gzerror(f->gzf, &err);
      if (got == 0 || err == Z_BUF_ERROR)
        return FH_FAIL(FH_ERR_DATA, "%s: ends at byte %lld of the uncompressed data, before the data it announces (truncated?)",
                       f->path, (long long)f->pos);
      return FH_FAIL(FH_ERR_DATA, "%s: cannot decompress at byte %lld: %s (damaged file?)", f->path, (long long)f->pos,
                     why);
    }
    p += got;
    len -= (size_t)got;
    f->pos += got;
  }
  return 0;
}

static uint32_t be32(const unsigned char *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reads and checks the header: magic, then ndims dimensions into dims. */
static int read_header(idx_file *f, uint32_t magic, int ndims, uint32_t *dims) {
  unsigned char h[16];
  FH_TRY(file_read(f, h, 4 + 4 * (size_t)ndims, 0));
  uint32_t m = be32(h);
  if (m != magic)
    return FH_FAIL(FH_ERR_DATA, "%s: magic number 0x%08x, expected 0x%08x (IDX unsigned-byte %s); not an IDX %s file",
                   f->path, m, magic, ndims == 3 ? "images [N, H, W]" : "labels [N]", ndims == 3 ? "image" : "label");
  for (int i = 0; i < ndims; i++) dims[i] = be32(h + 4 + 4 * i);
  return 0;
}

/* Checks the (uncompressed) size against the header's promise. gzip keeps the
 * uncompressed size modulo 2^32 in its last four bytes (little-endian). */
static int check_size(const idx_file *f, int64_t expected, const char *what) {
  struct stat st;
  if (stat(f->path, &st) != 0) return FH_FAIL(FH_ERR_DATA, "%s: %s", f->path, strerror(errno));
  if (f->gz) {
    unsigned char t[4] = {0};
    int fd = open(f->path, O_RDONLY);
    int ok = fd >= 0 && st.st_size >= 18 && pread(fd, t, 4, st.st_size - 4) == 4;
    if (fd >= 0) close(fd);
    uint32_t isize = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
    if (!ok || isize != (uint32_t)expected)
      return FH_FAIL(FH_ERR_DATA,
                     "%s: the gzip trailer gives %u uncompressed bytes, expected %lld (the header's %s); "
                     "the file is truncated or damaged",
                     f->path, isize, (long long)expected, what);
    return 0;
  }
  if ((int64_t)st.st_size < expected)
    return FH_FAIL(FH_ERR_DATA, "%s: %lld bytes, expected %lld (the header's %s); the file is truncated", f->path,
                   (long long)st.st_size, (long long)expected, what);
  if ((int64_t)st.st_size > expected)
    return FH_FAIL(FH_ERR_DATA, "%s: %lld bytes, expected %lld (the header's %s); not the file its header describes",
                   f->path, (long long)st.st_size, (long long)expected, what);
  return 0;
}

static void idx_close(fh_source *src) {
  idx_source *s = src->impl;
  if (!s) return;
  for (int i = 0; i < 2; i++) file_close(&s->images[i]);
  free(s->buf);
  free(s);
  src->impl = NULL;
}

static int idx_read_rows(fh_source *src, int split, const int64_t *rows, int64_t count, float *x) {
  idx_source *s = src->impl;
  idx_file *f = &s->images[split];
  const size_t dim = (size_t)src->dim;
  const int64_t per_chunk = (int64_t)(s->buf_len / dim);
  for (int64_t i = 0, j; i < count; i = j + 1) {
    if (rows[i] < 0 || rows[i] >= src->n[split])
      return FH_FAIL(FH_ERR_RUNTIME, "%s: row %lld asked for, but it has %lld", f->path, (long long)rows[i],
                     (long long)src->n[split]);
    /* A run of consecutive (or repeated) rows is one read. */
    for (j = i; j + 1 < count && rows[j + 1] - rows[i] < per_chunk && rows[j + 1] <= rows[j] + 1 &&
                rows[j + 1] < src->n[split];
         j++) {
    }
    const int64_t span = rows[j] - rows[i] + 1;
    FH_TRY(file_read(f, s->buf, (size_t)span * dim, 16 + rows[i] * (int64_t)dim));
    for (int64_t t = i; t <= j; t++) {
      const unsigned char *p = s->buf + (size_t)(rows[t] - rows[i]) * dim;
      float *out = x + (size_t)t * dim;
      if (s->transpose) {
        for (int r = 0; r < s->h; r++)
          for (int c = 0; c < s->w; c++) out[(size_t)r * s->w + c] = (float)p[(size_t)c * s->h + r];
      } else {
        for (size_t k = 0; k < dim; k++) out[k] = (float)p[k];
      }
    }
  }
  return 0;
}

/* One split: images and labels, counts and sizes checked, labels read. */
static int open_split(fh_source *src, idx_source *s, const char *dir, const char *prefix, const char *part, int split,
                      const emnist_split *em) {
  char stem[128];
  snprintf(stem, sizeof stem, "%s%s-images-idx3-ubyte", prefix, part);
  idx_file *img = &s->images[split];
  FH_TRY(file_open(img, dir, stem));
  uint32_t d[3];
  FH_TRY(read_header(img, IDX_IMAGES, 3, d));
  if (d[1] == 0 || d[2] == 0 || d[1] > 16384 || d[2] > 16384)
    return FH_FAIL(FH_ERR_DATA, "%s: images of %ux%u pixels; not an image file", img->path, d[1], d[2]);
  /* EMNIST's stored [d1, d2] is the upright image's transpose: upright d2 x d1 */
  const int h = (int)(s->transpose ? d[2] : d[1]), w = (int)(s->transpose ? d[1] : d[2]);
  if (split == FH_SPLIT_TRAIN) {
    s->h = h;
    s->w = w;
  } else if (h != s->h || w != s->w) {
    return FH_FAIL(FH_ERR_DATA, "%s: images of %ux%u pixels, but the train images are %ux%u", img->path, d[1], d[2],
                   s->transpose ? s->w : s->h, s->transpose ? s->h : s->w);
  }
  const int64_t n = d[0], dim = (int64_t)d[1] * d[2];
  char what[96];
  snprintf(what, sizeof what, "%lld images of %ux%u", (long long)n, d[1], d[2]);
  FH_TRY(check_size(img, 16 + n * dim, what));

  idx_file lab;
  snprintf(stem, sizeof stem, "%s%s-labels-idx1-ubyte", prefix, part);
  int rc = file_open(&lab, dir, stem);
  uint32_t m = 0;
  if (rc == 0) rc = read_header(&lab, IDX_LABELS, 1, &m);
  if (rc == 0 && m != d[0])
    rc = FH_FAIL(FH_ERR_DATA, "%s has %u labels but %s has %u images; they must match", lab.path, m, img->base, d[0]);
  if (rc == 0) {
    snprintf(what, sizeof what, "%u labels", m);
    rc = check_size(&lab, 8 + (int64_t)m, what);
  }
  unsigned char *raw = NULL;
  if (rc == 0) {
    raw = fh_malloc(m ? m : 1);
    rc = file_read(&lab, raw, m, 8);
  }
  if (rc == 0) {
    int32_t *y = fh_malloc(sizeof(int32_t) * (m ? m : 1));
    src->labels[split] = y;
    src->n[split] = n;
    for (uint32_t i = 0; i < m; i++) y[i] = (int32_t)raw[i] - em->first_label;
    for (uint32_t i = 0; i < m && rc == 0; i++)
      if (y[i] < 0 || y[i] >= em->classes)
        rc = FH_FAIL(FH_ERR_DATA, "%s: label %u is %d, outside %d..%d (%d classes); not this dataset's label file",
                     lab.path, i, (int)raw[i], em->first_label, em->first_label + em->classes - 1, em->classes);
  }
  free(raw);
  file_close(&lab);
  return rc;
}

int fh_idx_open(fh_source *src, const fh_config *cfg) {
  const char *dir;
  FH_TRY(fh_source_folder(cfg, "the IDX files (train-images-idx3-ubyte[.gz], ...)", &dir));
  idx_source *s = fh_calloc(1, sizeof *s);
  s->images[0].fd = s->images[1].fd = -1;
  src->impl = s;
  src->close = idx_close;
  src->read_rows = idx_read_rows;

  const char *split = fh_cfg_str(cfg, "data.emnist_split");
  static const emnist_split plain = {"", 10, 0};
  const emnist_split *em = &plain;
  char prefix[64] = "";
  if (strcmp(split, "none") != 0) {
    for (size_t i = 0; i < sizeof EMNIST / sizeof EMNIST[0]; i++)
      if (strcmp(EMNIST[i].name, split) == 0) em = &EMNIST[i];
    snprintf(prefix, sizeof prefix, "emnist-%s-", split);
    s->transpose = 1;
  }
  FH_TRY(open_split(src, s, dir, prefix, "train", FH_SPLIT_TRAIN, em));
  FH_TRY(open_split(src, s, dir, prefix, em == &plain ? "t10k" : "test", FH_SPLIT_TEST, em));

  if (em == &plain) {
    /* the folder's name: mnist, fashion-mnist, ... */
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    const char *base = dir;
    for (size_t i = 0; i + 1 < len; i++)
      if (dir[i] == '/') base = dir + i + 1;
    snprintf(src->name, sizeof src->name, "%.*s", (int)(dir + len - base), base);
  } else {
    snprintf(src->name, sizeof src->name, "emnist-%s", split);
  }
  src->num_classes = em->classes;
  src->c = 1;
  src->h = s->h;
  src->w = s->w;
  src->dim = s->h * s->w;
  src->value_scale = 255.0f;
  s->buf_len = READ_CHUNK > (size_t)src->dim ? READ_CHUNK : (size_t)src->dim;
  s->buf = fh_malloc(s->buf_len);
  if (strcmp(fh_cfg_str(cfg, "data.source"), "fmnist") == 0) {
    if (em != &plain)
      return FH_FAIL(FH_ERR_CONFIG, "data.source = fmnist reads Fashion-MNIST; data.emnist_split = %s needs data.source = idx",
                     split);
    snprintf(src->name, sizeof src->name, "fashion-mnist");
    const float mean = 0.2860f, std = 0.3530f; /* Fashion-MNIST's training set */
    fh_source_set_norm(src, &mean, &std, 1);
    return 0;
  }
  const float mean = 0.1307f, std = 0.3081f; /* MNIST's, the usual for the family */
  fh_source_set_norm(src, &mean, &std, 1);
  return 0;
}
