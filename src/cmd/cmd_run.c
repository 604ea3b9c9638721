/* fedhpc run DECK [--set section.key=value ...] */
#include "cmd/commands.h"
#include "core/error.h"
#include "fl/run.h"

int fh_cmd_run(int argc, char **argv) {
  fh_config *cfg = NULL;
  FH_TRY(fh_load_config_from_args(argc, argv, 1, &cfg, NULL, NULL));
  fh_run *run = NULL;
  int rc = fh_run_create(&run, cfg, MPI_COMM_WORLD);
  if (rc == 0) rc = fh_run_execute(run, NULL);
  fh_run_free(run);
  fh_config_free(cfg);
  return rc;
}
