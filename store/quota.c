/* Per-domain quotas (spec §11): one table indexed by enum quota_id.  They bind
 * unprivileged connections only; path-max binds everyone. */
#include <string.h>

#include "store/xstored.h"

struct quota quotas[Q_COUNT] = {
    [Q_NODES] = {"nodes", "Nodes per domain", 1000, 0},
    [Q_WATCHES] = {"watches", "Watches per domain", 128, 0},
    [Q_TRANSACTIONS] = {"transactions", "Transactions per domain", 10, 0},
    [Q_OUTSTANDING] = {"outstanding", "Outstanding requests per domain", 20, 0},
    [Q_TRANSACTION_NODES] = {"transaction-nodes", "Max. number of accessed nodes per transaction",
			     1024, 0},
    [Q_MEMORY] = {"memory", "Total Xenstore memory per domain", 2621440, 2097152},
    [Q_NODE_SIZE] = {"node-size", "Max. size of a node", 2048, 0},
    [Q_PATH_MAX] = {"path-max", "Max. length of a node path", 2048, 0},
    [Q_PERMISSIONS] = {"permissions", "Max. number of permissions per node", 5, 0},
};

int quota_by_name(const char *name)
{
	for (int i = 0; i < Q_COUNT; i++)
		if (strcmp(quotas[i].name, name) == 0)
			return i;
	return -1;
}
