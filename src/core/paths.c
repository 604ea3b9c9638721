#include "core/paths.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "core/error.h"

int fh_mkdir_p(const char *path) {
  char buf[4200];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0775) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(buf, 0775) != 0 && errno != EEXIST) return -1;
  struct stat st;
  if (stat(buf, &st) != 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

int fh_mkdir_parent(const char *file) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s", file);
  char *slash = strrchr(dir, '/');
  if (!slash) return 0;
  if (slash == dir) return 0; /* "/name": the root exists */
  *slash = '\0';
  return fh_mkdir_p(dir);
}

void fh_deck_name(const fh_config *cfg, const char *fallback, char *out, size_t len) {
  const char *deck = fh_cfg_deck_path(cfg);
  if (!deck) {
    snprintf(out, len, "%s", fallback);
    return;
  }
  const char *slash = strrchr(deck, '/');
  snprintf(out, len, "%.255s", slash ? slash + 1 : deck);
  char *dot = strrchr(out, '.');
  if (dot && dot != out) *dot = '\0';
}

int fh_run_name(const fh_config *cfg, const char *fallback, char *out, size_t len) {
  const char *name = fh_cfg_str(cfg, "output.name");
  if (name[0]) {
    size_t n = strlen(name);
    if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || n > 255)
      return FH_FAIL(FH_ERR_CONFIG, "output.name = '%.60s%s' (%zu bytes): must be a plain folder name (no '/', not "
                                    "'.' or '..', at most 255 bytes); put folders in output.dir",
                     name, n > 60 ? "..." : "", n);
    snprintf(out, len, "%s", name);
    return 0;
  }
  fh_deck_name(cfg, fallback, out, len);
  return 0;
}

const char *fh_write_cause(const char *path, int err) {
  if (err == ENOSPC || err == EDQUOT) return err == ENOSPC ? "no space left on device" : "disk quota exceeded";
  char dir[4200];
  snprintf(dir, sizeof dir, "%s", path);
  struct statvfs vs;
  for (;;) { /* the nearest existing folder of path */
    if (statvfs(dir, &vs) == 0) break;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
      snprintf(dir, sizeof dir, "%s", slash ? "/" : ".");
      if (statvfs(dir, &vs) != 0) return err ? strerror(err) : "";
      break;
    }
    *slash = '\0';
  }
  /* Less than 64 KiB left: the write failed because the disk is full. */
  if ((unsigned long long)vs.f_bavail * vs.f_frsize < 65536ull) return "no space left on device";
  if (err == EACCES || err == EROFS || err == EIO) return strerror(err);
  return "";
}
