#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"

static int g_rank;

void fh_log_set_rank(int rank) { g_rank = rank; }
int fh_log_rank(void) { return g_rank; }

void fh_info(const char *fmt, ...) {
  if (g_rank != 0) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
}

void fh_warn(const char *fmt, ...) {
  if (g_rank != 0) return;
  fputs("fedhpc: warning: ", stderr);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
}

void fh_report_error(void) {
  if (g_rank != 0) return;
  const char *dbg = getenv("FEDHPC_DEBUG");
  if (dbg && dbg[0] == '1')
    fprintf(stderr, "fedhpc: error: %s [%s]\n", fh_error_msg(), fh_error_where());
  else
    fprintf(stderr, "fedhpc: error: %s\n", fh_error_msg());
  fflush(stdout);
  fflush(stderr);
}

void fh_format_eta(double s, char *buf, size_t len) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}
