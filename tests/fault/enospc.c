/* LD_PRELOAD shim for the full-disk tests: write(), pwrite(), writev(),
 * pwritev() (and their 64-bit names) to files whose name (the last part of
 * the path) is FEDHPC_ENOSPC_MATCH (or starts with it when it ends in '*';
 * an exact name keeps MPI-IO's own files, named after the file, out) fail with ENOSPC once this process has written
 * FEDHPC_ENOSPC_AFTER bytes to such files (default 0: the first write fails).
 * After the first failure statvfs() of any path reports no free blocks, as on
 * a full disk. Without FEDHPC_ENOSPC_MATCH the shim does nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *match;
static long long limit, written;
static int tripped, inited;

static void init(void) {
  if (inited) return;
  inited = 1;
  match = getenv("FEDHPC_ENOSPC_MATCH");
  if (match && !match[0]) match = NULL;
  const char *a = getenv("FEDHPC_ENOSPC_AFTER");
  limit = a ? atoll(a) : 0;
}

/* -1 (errno ENOSPC) when this write of n bytes to fd must fail. */
static int refuse(int fd, size_t n) {
  init();
  if (!match) return 0;
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t len = readlink(link, path, sizeof path - 1);
  if (len <= 0) return 0;
  path[len] = '\0';
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t m = strlen(match);
  int prefix = match[m - 1] == '*';
  if (prefix ? strncmp(base, match, m - 1) != 0 : strcmp(base, match) != 0) return 0;
  if (written + (long long)n > limit) {
    tripped = 1;
    errno = ENOSPC;
    return -1;
  }
  written += (long long)n;
  return 0;
}

static size_t iov_bytes(const struct iovec *iov, int cnt) {
  size_t n = 0;
  for (int i = 0; i < cnt; i++) n += iov[i].iov_len;
  return n;
}

#define REAL(name, ret, ...)                                        \
  static ret (*real_##name)(__VA_ARGS__);                           \
  if (!real_##name) real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t n) {
  REAL(write, ssize_t, int, const void *, size_t);
  return refuse(fd, n) ? -1 : real_write(fd, buf, n);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite, ssize_t, int, const void *, size_t, off_t);
  return refuse(fd, n) ? -1 : real_pwrite(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite64, ssize_t, int, const void *, size_t, off_t);
  return refuse(fd, n) ? -1 : real_pwrite64(fd, buf, n, off);
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  REAL(writev, ssize_t, int, const struct iovec *, int);
  return refuse(fd, iov_bytes(iov, cnt)) ? -1 : real_writev(fd, iov, cnt);
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev, ssize_t, int, const struct iovec *, int, off_t);
  return refuse(fd, iov_bytes(iov, cnt)) ? -1 : real_pwritev(fd, iov, cnt, off);
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev64, ssize_t, int, const struct iovec *, int, off_t);
  return refuse(fd, iov_bytes(iov, cnt)) ? -1 : real_pwritev64(fd, iov, cnt, off);
}
int statvfs(const char *path, struct statvfs *buf) {
  REAL(statvfs, int, const char *, struct statvfs *);
  int r = real_statvfs(path, buf);
  if (r == 0 && tripped) buf->f_bavail = buf->f_bfree = 0;
  return r;
}
