/* Paths of the files fedhpc writes: folders made on demand, the run's name,
 * and the cause of a failed write in words. */
#ifndef FH_PATHS_H
#define FH_PATHS_H

#include <stddef.h>

#include "core/config.h"

/* mkdir -p: creates every missing folder of path (mode 0775). 0, or -1 with
 * errno set (ENOTDIR when path exists and is not a folder). */
int fh_mkdir_p(const char *path);

/* Creates the folder that will hold the file `file` (its dirname); 0 or -1
 * with errno. A bare file name needs no folder. */
int fh_mkdir_parent(const char *file);

/* The deck's file name without its extension, or `fallback` (a deck given
 * only by --set). */
void fh_deck_name(const fh_config *cfg, const char *fallback, char *out, size_t len);

/* The run's name: output.name, or the deck's file name without its extension,
 * or `fallback` (a deck given only by --set). output.name must be a plain
 * name: not empty after the deck's default, no '/', not "." or "..", at most
 * 255 bytes; otherwise FH_ERR_CONFIG naming the key and the rule. */
int fh_run_name(const fh_config *cfg, const char *fallback, char *out, size_t len);

/* "no space left on device" (or another reason) for a write to `path` that
 * failed: errno `err` when it says something, else the free space of the
 * file system that holds path (statvfs) when it is exhausted, else "". */
const char *fh_write_cause(const char *path, int err);

#endif
