/* Status codes: one table that names every FTSVM_E* code (include/ftsvm.h). */
#include "ftsvm.h"

const char *ftsvm_strerror(int err)
{
    switch (err) {
    case FTSVM_OK:         return "success";
    case FTSVM_EINVAL:     return "invalid argument or configuration value";
    case FTSVM_ESTATE:     return "call not allowed in this state (is ftsvm initialized?)";
    case FTSVM_ERANGE:     return "id or size out of range";
    case FTSVM_ENOSYS:     return "not implemented in this version of ftsvm";
    case FTSVM_ENOMEM:     return "out of memory";
    case FTSVM_ESYS:       return "system call failed";
    case FTSVM_ETRANSPORT: return "transport failure";
    case FTSVM_ETIMEDOUT:  return "timed out";
    case FTSVM_EBOOT:      return "start-up failed (rendezvous or PMIx)";
    case FTSVM_EPEER:      return "peer node failed or is unreachable";
    case FTSVM_EPROTO:     return "malformed message from a peer";
    case FTSVM_EFENCED:    return "this node was removed from the view (fenced)";
    default:               return "unknown ftsvm error code";
    }
}
