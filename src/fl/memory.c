/* Before the model is allocated: each rank's memory for it, against what the
 * node has; after setup: what the client state may grow to (see
 * fh_run_memory_check and fh_run_state_memory_check in run.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "fl/run.h"
#include "nn/model.h"

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
  char what[400];
  snprintf(what, sizeof what, "model.hidden = %s: the model has %.3g parameters and", hs, params);
  FH_TRY(fh_memory_reserve(what, need, "that is parameters, gradients, optimiser, payload and accumulator; make the "
                                       "model smaller or run fewer ranks per node"));
  if (need > 2e9 && run->rank == 0)
    fh_info("model mlp: %.3g parameters, about %.1f GiB per rank; allocating", params, need / 1073741824.0);
  return 0;
}

/* The memory backend keeps a client's state vectors from its first round on:
 * with every client sampled in time, a rank holds all of its clients' fields.
 * A warning (not a refusal: with partial participation many clients may
 * never be sampled) when that exceeds the node's memory. */
void fh_run_state_memory_check(const fh_run *run) {
  const double per_client = (double)fh_client_store_row_bytes(run->state);
  const int memory = strcmp(fh_client_store_backend(run->state), "memory") == 0;
  const double max_bytes = memory ? per_client * run->nlocal : 0;
  double worst = 0;
  MPI_Allreduce(&max_bytes, &worst, 1, MPI_DOUBLE, MPI_MAX, run->comm);
  const double avail = fh_memory_node_available();
  const int ranks = fh_memory_node_ranks();
  if (avail > 0 && worst * ranks > avail)
    fh_warn("client state: up to %.1f GiB per rank (%.0f bytes per client) once every client has trained, %.1f GiB "
            "for the %d ranks of a node that has %.1f GiB available; set state.backend = hdf5 (state on disk) or run "
            "more ranks or nodes", worst / 1073741824.0, per_client, worst * ranks / 1073741824.0, ranks,
            avail / 1073741824.0);
}
