/* Progress lines for long initialisation steps (see progress.h). */
#include "core/progress.h"

#include <stdio.h>
#include <time.h>

#include "core/log.h"

#define FH_PROGRESS_QUIET_S 3.0  /* a step shorter than this says nothing */
#define FH_PROGRESS_EVERY_S 10.0 /* at most one line per this many seconds */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void fh_progress_begin(fh_progress *p, const char *what, long long total) {
  snprintf(p->what, sizeof p->what, "%s", what);
  p->t0 = p->last = now_s();
  p->total = total;
  p->printed = 0;
}

void fh_progress_step(fh_progress *p, long long done) {
  const double t = now_s();
  if (t - p->t0 < FH_PROGRESS_QUIET_S || (p->printed && t - p->last < FH_PROGRESS_EVERY_S)) return;
  p->last = t;
  p->printed = 1;
  char eta[32] = "?";
  if (done > 0 && p->total > done) fh_format_eta((t - p->t0) * (double)(p->total - done) / (double)done, eta, sizeof eta);
  fh_info("%s: %lld/%lld (%.0f%%), %.0f s, ETA %s", p->what, done, p->total,
          p->total > 0 ? 100.0 * (double)done / (double)p->total : 100.0, t - p->t0, eta);
}

void fh_progress_end(fh_progress *p) {
  if (p->printed) fh_info("%s: done in %.1f s", p->what, now_s() - p->t0);
}
