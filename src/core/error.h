/* Errors: every fallible function returns 0 or an fh_exit code and records one
 * human-readable message (the first one wins) that names the file, key or client
 * and says what to do. The CLI prints it once from rank 0 and exits with the code.
 *
 *   FH_TRY(call)                propagate a non-zero return
 *   FH_FAIL(code, fmt, ...)     record a message, return code
 *   fh_error_agree(comm, rc)    collective: every rank learns the first failing
 *                               rank's code; rank 0 also gets its message, so the
 *                               run stops everywhere with one line and no hang.
 */
#ifndef FH_ERROR_H
#define FH_ERROR_H

#include <stddef.h>
#include <mpi.h>

/* Exit codes of the fedhpc binary (documented in README.md). */
enum fh_exit {
  FH_OK = 0,
  FH_ERR_RUNTIME = 1,  /* internal or library failure                      */
  FH_ERR_USAGE = 2,    /* bad command line                                 */
  FH_ERR_CONFIG = 3,   /* deck: missing, unknown key, wrong type, range    */
  FH_ERR_DATA = 4,     /* dataset missing, wrong layout, labels out of range */
  FH_ERR_OUTPUT = 5,   /* output directory or file cannot be written       */
  FH_ERR_DIVERGED = 6, /* loss became NaN or infinite                      */
  FH_EXIT_REQUEUE = 75 /* stopped on a signal after a checkpoint (EX_TEMPFAIL) */
};

int fh_error_set(int code, const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *fh_error_msg(void);      /* "" when none */
/* Prepends context (e.g. "round 3, client 17: ") to the recorded message. */
void fh_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Appends to the recorded message (e.g. its cause); nothing when none. */
void fh_error_suffix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *fh_error_where(void);    /* "src/x.c:12" of the first failure */
int fh_error_code(void);
void fh_error_clear(void);

#define FH_FAIL(code, ...) fh_error_set((code), __FILE__, __LINE__, __VA_ARGS__)
#define FH_TRY(call)                    \
  do {                                  \
    int fh_rc_ = (call);                \
    if (fh_rc_ != 0) return fh_rc_;     \
  } while (0)

/* Collective over comm. Returns the code of the lowest-ranked failing rank (0 if
 * none failed); after it, fh_error_msg() on rank 0 holds that rank's message. */
int fh_error_agree(MPI_Comm comm, int local_rc);

/* malloc/calloc that abort the run with a clear message on exhaustion. */
void *fh_malloc(size_t bytes);
void *fh_calloc(size_t count, size_t size);

#endif
