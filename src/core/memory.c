/* Memory checks before large allocations (see memory.h). */
#include "core/memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int node_ranks = 0;        /* 0: fh_memory_node_init not called */
static double node_available = 0; /* least over the node's ranks */

double fh_memory_available(void) {
  double avail = 0;
  FILE *f = fopen("/proc/meminfo", "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "MemAvailable:", 13) == 0) avail = atof(line + 13) * 1024.0;
    fclose(f);
  }
  f = fopen("/sys/fs/cgroup/memory.max", "r");
  double limit = 0, used = 0;
  if (f) {
    char buf[64] = "";
    if (fgets(buf, sizeof buf, f) && strncmp(buf, "max", 3) != 0) limit = atof(buf);
    fclose(f);
  }
  f = fopen("/sys/fs/cgroup/memory.current", "r");
  if (f) {
    if (fscanf(f, "%lf", &used) != 1) used = 0;
    fclose(f);
  }
  if (limit > 0 && (avail <= 0 || limit - used < avail)) avail = limit - used;
  return avail;
}

void fh_memory_node_init(MPI_Comm comm) {
  MPI_Comm node;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &node_ranks);
  double avail = fh_memory_available();
  MPI_Allreduce(&avail, &node_available, 1, MPI_DOUBLE, MPI_MIN, node);
  MPI_Comm_free(&node);
}

int fh_memory_node_ranks(void) { return node_ranks > 0 ? node_ranks : 1; }

double fh_memory_node_available(void) { return node_ranks > 0 ? node_available : fh_memory_available(); }

int fh_memory_reserve(const char *what, double bytes, const char *advice) {
  const int ranks = fh_memory_node_ranks();
  const double avail = fh_memory_node_available();
  if (avail <= 0 || bytes * ranks <= avail) return 0;
  const double gib = 1073741824.0;
  return FH_FAIL(FH_ERR_CONFIG, "%s needs about %.1f GiB per rank, %.1f GiB for the %d rank%s of this node, which "
                                "has %.1f GiB available; %s", what, bytes / gib, bytes * ranks / gib, ranks,
                 ranks == 1 ? "" : "s", avail / gib, advice);
}
