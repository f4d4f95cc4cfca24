/* lib/locks: replicated queue locks with a primary and a secondary home
 * (DESIGN.md section 6). Not built yet. */
#ifndef FTSVM_LOCKS_H
#define FTSVM_LOCKS_H
#endif
