/* The memory a rank may take, checked before the large allocations (the
 * clients' data, a dense model) so that a run too big for its node is
 * refused at once with the estimate, instead of swapping or being killed
 * minutes later.
 *
 *   fh_memory_node_init(comm)   collective, once per run: how many ranks
 *                               share this node, and the least memory any
 *                               of them sees available
 *   fh_memory_reserve(...)      any rank, alone: refuses bytes x (ranks on
 *                               the node) above what the node has */
#ifndef FH_MEMORY_H
#define FH_MEMORY_H

#include <mpi.h>

/* Bytes this process may still take: the smaller of MemAvailable and the
 * cgroup's limit less its usage; 0 when neither can be read. */
double fh_memory_available(void);

/* Collective over comm: records the ranks on this node and their least
 * available memory for fh_memory_reserve. Without it, reserve assumes one
 * rank and reads the memory itself. */
void fh_memory_node_init(MPI_Comm comm);
int fh_memory_node_ranks(void);
double fh_memory_node_available(void);

/* FH_ERR_CONFIG when bytes per rank x the node's ranks exceed what the node
 * has: "<what> needs about X GiB per rank, Y GiB for the N ranks of this
 * node, which has Z GiB available; <advice>". 0 otherwise (also when the
 * memory cannot be read). Not collective: agree on the result afterwards. */
int fh_memory_reserve(const char *what, double bytes, const char *advice);

#endif
