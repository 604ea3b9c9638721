/* Logging: rank 0 speaks for the run (one line per event); other ranks print
 * only errors, which normally travel to rank 0 through fh_error_agree first. */
#ifndef FH_LOG_H
#define FH_LOG_H

#include <stddef.h>

void fh_log_set_rank(int rank);
int fh_log_rank(void);
/* stdout, rank 0 only, newline added. */
void fh_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* stderr, rank 0 only: "fedhpc: warning: ..." */
void fh_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* stderr, rank 0 only: "fedhpc: error: <fh_error_msg()>" (source location with
 * FEDHPC_DEBUG=1 in the environment). */
void fh_report_error(void);
/* A remaining time s (seconds) as "m:ss", or "h:mm:ss" from an hour on. */
void fh_format_eta(double s, char *buf, size_t len);

#endif
