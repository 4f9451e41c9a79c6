#ifndef COUNTERSIGN_CLDNS_H
#define COUNTERSIGN_CLDNS_H
/* The only door to libldns: DNSWire imports this module and nothing else does. */
#include <ldns/ldns.h>
#endif
