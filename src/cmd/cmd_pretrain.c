/* fedhpc pretrain DECK [--set section.key=value ...] [--resume] */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/paths.h"
#include "core/signals.h"
#include "fl/addons/pretrain.h"

int fh_cmd_pretrain(int argc, char **argv) {
  /* --resume takes no value: strip it before the deck parser sees it */
  int resume = 0, n = 0;
  char **args = fh_calloc((size_t)argc + 1, sizeof(char *));
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--resume") == 0) resume = 1;
    else args[n++] = argv[i];
  }
  fh_config *cfg = NULL;
  int rc = fh_load_config_from_args(n, args, 1, &cfg, NULL, NULL);
  free(args);
  if (rc != 0) return rc;
  /* pm.path's folder (by default output.dir), as `run` makes its run folder */
  char pm[4200];
  fh_pm_path(cfg, pm, sizeof pm);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0 && fh_mkdir_parent(pm) != 0)
    rc = FH_FAIL(FH_ERR_OUTPUT, "pm.path = '%s': cannot create its folder: %s; set output.dir or pm.path to a "
                                "writable place", pm, strerror(errno));
  rc = fh_error_agree(MPI_COMM_WORLD, rc);
  if (rc != 0) {
    fh_config_free(cfg);
    return rc;
  }
  fh_signals_install();
  rc = fh_pretrain(cfg, MPI_COMM_WORLD, resume);
  fh_config_free(cfg);
  return rc;
}
