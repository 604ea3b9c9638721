/* Before the model is allocated: each rank's memory for it, against what the
 * node has (see fh_run_memory_check in run.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "fl/run.h"
#include "nn/model.h"

/* Bytes this process may still take: the smaller of MemAvailable and the
 * cgroup's limit less its usage; 0 when neither can be read. */
static double available_bytes(void) {
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

int fh_run_memory_check(const fh_run *run) {
  const fh_config *cfg = run->cfg;
  if (strcmp(fh_cfg_str(cfg, "model.arch"), "mlp") != 0) return 0; /* the large ones: dense layers */
  long long h[64];
  int nh = fh_cfg_intlist(cfg, "model.hidden", h, 64);
  if (nh > 64) nh = 64;
  char hs[256] = "";
  for (int i = 0; i < nh && strlen(hs) < sizeof hs - 24; i++)
    snprintf(hs + strlen(hs), sizeof hs - strlen(hs), "%s%lld", i ? "," : "", h[i]);
  const double in = (double)run->data->c * run->data->h * run->data->w;
  double params = 0, prev = in, widest = in;
  for (int i = 0; i < nh; i++) {
    params += prev * (double)h[i] + (double)h[i];
    prev = (double)h[i];
    if (prev > widest) widest = prev;
  }
  params += prev * run->data->num_classes + run->data->num_classes;
  /* parameters, gradients, optimiser state, the global payload, the client's
   * copy (4 bytes each) and the fixed-point accumulator (8), plus activations */
  const double batch = (double)fh_cfg_int(cfg, "train.batch_size");
  const double need = params * (5 * 4.0 + 8.0) + batch * widest * 4.0 * 4 * (nh + 1);
  MPI_Comm node;
  int local = 1;
  MPI_Comm_split_type(run->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &local);
  double avail = available_bytes(), min_avail = avail;
  MPI_Allreduce(&avail, &min_avail, 1, MPI_DOUBLE, MPI_MIN, node);
  MPI_Comm_free(&node);
  if (min_avail <= 0 || need * local <= min_avail) {
    if (need > 2e9 && run->rank == 0)
      fh_info("model mlp: %.3g parameters, about %.1f GiB per rank; allocating", params, need / 1073741824.0);
    return 0;
  }
  return FH_FAIL(FH_ERR_CONFIG, "model.hidden = %s: the model has %.3g parameters and needs about %.1f GiB per rank "
                                "(parameters, gradients, optimiser, payload, accumulator), %.1f GiB for the %d ranks "
                                "of this node, which has %.1f GiB available; make the model smaller or run fewer "
                                "ranks per node", hs, params, need / 1073741824.0,
                 need * local / 1073741824.0, local, min_avail / 1073741824.0);
}
