/* Opening a pool source by data.source, and the checks the sources share. */
#include "data/source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "data/source_impl.h"

int fh_source_is_pool(const fh_config *cfg) { return strcmp(fh_cfg_str(cfg, "data.source"), "synthetic") != 0; }

int fh_source_open(fh_source **out, const fh_config *cfg) {
  *out = NULL;
  const char *name = fh_cfg_str(cfg, "data.source");
  fh_source *src = fh_calloc(1, sizeof *src);
  src->value_scale = 1.0f;
  snprintf(src->origin, sizeof src->origin, "%s", fh_source_path(cfg));
  int rc;
  if (strcmp(name, "hdf5") == 0)
    rc = fh_hdf5_open(src, cfg);
  else if (strcmp(name, "idx") == 0 || strcmp(name, "fmnist") == 0)
    rc = fh_idx_open(src, cfg);
  else if (strcmp(name, "cifar10") == 0)
    rc = fh_cifar_open(src, cfg, 0);
  else if (strcmp(name, "cifar100") == 0)
    rc = fh_cifar_open(src, cfg, 1);
  else if (strcmp(name, "leaf") == 0)
    rc = fh_leaf_open(src, cfg);
  else if (strcmp(name, "synthimg") == 0)
    rc = fh_synthimg_open(src, cfg);
  else if (strcmp(name, "features") == 0)
    rc = fh_features_open(src, cfg);
  else
    rc = FH_FAIL(FH_ERR_CONFIG, "data.source = %s is not a sample pool read from files (its clients are generated one by one); use hdf5, idx, cifar10, cifar100, leaf, synthimg or features here", name);
  if (rc == 0 && !src->mean) {
    const float zero = 0.0f, one = 1.0f;
    fh_source_set_norm(src, &zero, &one, 1);
  }
  if (rc != 0) {
    fh_source_close(src);
    return rc;
  }
  *out = src;
  return 0;
}

void fh_source_close(fh_source *src) {
  if (!src) return;
  if (src->close) src->close(src);
  for (int s = 0; s < 2; s++) {
    free(src->labels[s]);
    free(src->offsets[s]);
  }
  free(src->mean);
  free(src->std);
  free(src);
}

void fh_source_set_norm(fh_source *src, const float *mean, const float *std, int nvals) {
  free(src->mean);
  free(src->std);
  src->mean = fh_malloc(sizeof(float) * (size_t)(src->c > 0 ? src->c : 1));
  src->std = fh_malloc(sizeof(float) * (size_t)(src->c > 0 ? src->c : 1));
  for (int i = 0; i < src->c; i++) {
    src->mean[i] = mean[nvals == 1 ? 0 : i];
    src->std[i] = std[nvals == 1 ? 0 : i];
  }
}

const char *fh_source_path(const fh_config *cfg) {
  const char *path = fh_cfg_str(cfg, "data.path");
  if (path[0] == '\0' && strcmp(fh_cfg_str(cfg, "data.source"), "fmnist") == 0) return FH_FMNIST_DIR;
  return path;
}

int fh_source_folder(const fh_config *cfg, const char *what, const char **dir) {
  *dir = fh_source_path(cfg);
  if ((*dir)[0] == '\0')
    return FH_FAIL(FH_ERR_CONFIG, "data.path is empty; data.source = %s needs the folder that holds %s (docs/datasets.md)",
                   fh_cfg_str(cfg, "data.source"), what);
  struct stat st;
  if (stat(*dir, &st) != 0)
    return FH_FAIL(FH_ERR_DATA, "data.path = '%s': %s%s", *dir, errno == ENOENT ? "no such folder" : strerror(errno),
                   strcmp(fh_cfg_str(cfg, "data.source"), "fmnist") == 0 && strcmp(*dir, FH_FMNIST_DIR) == 0
                       ? " (install Debian's dataset-fashion-mnist: scripts/install-deps.sh)"
                       : "");
  if (!S_ISDIR(st.st_mode))
    return FH_FAIL(FH_ERR_DATA, "data.path = '%s': is a file; data.source = %s needs the folder that holds %s", *dir,
                   fh_cfg_str(cfg, "data.source"), what);
  return 0;
}

int fh_path_join(char *out, size_t len, const char *dir, const char *name) {
  size_t dl = strlen(dir);
  while (dl > 1 && dir[dl - 1] == '/') dl--;
  int n = snprintf(out, len, "%.*s/%s", (int)dl, dir, name);
  return n < 0 || (size_t)n >= len ? -1 : 0;
}

int fh_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int fh_pread_full(int fd, const char *path, void *buf, size_t len, int64_t offset) {
  char *p = buf;
  while (len > 0) {
    ssize_t got = pread(fd, p, len, (off_t)offset);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return FH_FAIL(FH_ERR_DATA, "%s: cannot read at byte %lld: %s", path, (long long)offset, strerror(errno));
    if (got == 0)
      return FH_FAIL(FH_ERR_DATA, "%s: ends at byte %lld, before the data it announces (truncated?)", path,
                     (long long)offset);
    p += got;
    len -= (size_t)got;
    offset += got;
  }
  return 0;
}
