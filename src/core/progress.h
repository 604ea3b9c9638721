/* Progress lines for long initialisation steps (loading many clients' data,
 * generating samples): rank 0 prints "<what>: i/total (p%), t s, ETA m:ss"
 * at most every 10 s once a step has run 3 s, and "<what>: done in t s" at
 * the end of a step that printed anything. Steps shorter than 3 s print
 * nothing. Not collective; only rank 0 prints (fh_info). */
#ifndef FH_PROGRESS_H
#define FH_PROGRESS_H

typedef struct {
  char what[96];
  double t0, last; /* wall-clock seconds: start, last line */
  long long total;
  int printed;
} fh_progress;

void fh_progress_begin(fh_progress *p, const char *what, long long total);
void fh_progress_step(fh_progress *p, long long done);
void fh_progress_end(fh_progress *p);

#endif
