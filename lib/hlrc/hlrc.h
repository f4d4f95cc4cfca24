/* lib/hlrc: pages, access faults, twins, diffs, intervals, write notices,
 * vector timestamps, acquire/release, barriers, shared allocation
 * (DESIGN.md sections 3 and 4). Not built yet: the public entry points fail
 * with FTSVM_ENOSYS (lib/api_pending.c) until this module lands. */
#ifndef FTSVM_HLRC_H
#define FTSVM_HLRC_H
#endif
