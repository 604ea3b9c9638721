#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FH_MSG_MAX 1024

static int g_code;
static char g_msg[FH_MSG_MAX];
static char g_where[256];

int fh_error_set(int code, const char *src_file, int src_line, const char *fmt, ...) {
  if (g_code != 0) return code; /* the first failure is the one to report */
  g_code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg, sizeof g_msg, fmt, ap);
  va_end(ap);
  snprintf(g_where, sizeof g_where, "%s:%d", src_file, src_line);
  return code;
}

const char *fh_error_msg(void) { return g_msg; }

void fh_error_prefix(const char *fmt, ...) {
  char head[256], tail[FH_MSG_MAX - 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(head, sizeof head, fmt, ap);
  va_end(ap);
  snprintf(tail, sizeof tail, "%.*s", (int)sizeof tail - 1, g_msg); /* keeps the message's start if it is long */
  snprintf(g_msg, sizeof g_msg, "%s%s", head, tail);
}
void fh_error_suffix(const char *fmt, ...) {
  if (g_code == 0) return;
  size_t n = strlen(g_msg);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg + n, sizeof g_msg - n, fmt, ap);
  va_end(ap);
}
const char *fh_error_where(void) { return g_where; }
int fh_error_code(void) { return g_code; }

void fh_error_clear(void) {
  g_code = 0;
  g_msg[0] = '\0';
  g_where[0] = '\0';
}

int fh_error_agree(MPI_Comm comm, int local_rc) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  /* Lowest failing rank wins: its rank number is the MIN over candidates. */
  int cand = local_rc != 0 ? rank : size;
  int first = size;
  MPI_Allreduce(&cand, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == size) return 0;
  int code = local_rc;
  MPI_Bcast(&code, 1, MPI_INT, first, comm);
  if (first != 0) {
    if (rank == first) {
      if (g_msg[0] == '\0') snprintf(g_msg, sizeof g_msg, "rank %d failed (code %d)", rank, code);
      MPI_Send(g_msg, FH_MSG_MAX, MPI_CHAR, 0, 917, comm);
    } else if (rank == 0) {
      char buf[FH_MSG_MAX];
      MPI_Recv(buf, FH_MSG_MAX, MPI_CHAR, first, 917, comm, MPI_STATUS_IGNORE);
      g_code = code;
      memcpy(g_msg, buf, FH_MSG_MAX);
      g_msg[FH_MSG_MAX - 1] = '\0';
    }
  }
  return code;
}

void *fh_malloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "fedhpc: error: out of memory allocating %zu bytes\n", bytes);
    MPI_Abort(MPI_COMM_WORLD, FH_ERR_RUNTIME);
  }
  return p;
}

void *fh_calloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) {
    fprintf(stderr, "fedhpc: error: out of memory allocating %zu x %zu bytes\n", count, size);
    MPI_Abort(MPI_COMM_WORLD, FH_ERR_RUNTIME);
  }
  return p;
}
