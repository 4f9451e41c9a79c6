#ifndef COUNTERSIGN_CNFTABLES_H
#define COUNTERSIGN_CNFTABLES_H
/* The only door to libnftables (the library nft itself is built on): KMSProxy's
   KernelDiversion imports this module and nothing else does. */
#include <nftables/libnftables.h>
#endif
