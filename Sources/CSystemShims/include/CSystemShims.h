#ifndef COUNTERSIGN_SYSTEM_SHIMS_H
#define COUNTERSIGN_SYSTEM_SHIMS_H

/// How many CPUs the calling thread may run on (sched_getaffinity and CPU_COUNT, which Swift
/// cannot call: the first is a GNU extension, the second a macro); 0 if it cannot be read.
int countersign_allowed_cpus(void);

#endif
