#ifndef COUNTERSIGN_COPENSSLSHIMS_H
#define COUNTERSIGN_COPENSSLSHIMS_H
/*
 * OpenSSL macros that Swift cannot import, wrapped as functions. Only opaque struct
 * names appear here so this header does not re-declare OpenSSL's API a second time.
 */
#include <stddef.h>

struct bio_st;
struct ssl_ctx_st;
struct evp_pkey_st;

/* OPENSSL_free */
void countersign_openssl_free(void *pointer);
/* BIO_get_mem_data: returns the length and sets *data to the buffer owned by the BIO. */
long countersign_bio_get_mem_data(struct bio_st *bio, char **data);
/* SSL_CTX_set_min_proto_version / SSL_CTX_set_max_proto_version */
int countersign_ssl_ctx_set_min_proto_version(struct ssl_ctx_st *context, int version);
int countersign_ssl_ctx_set_max_proto_version(struct ssl_ctx_st *context, int version);

/* EVP_PKEY_KEYPAIR, the selection for EVP_PKEY_fromdata of a whole key pair. */
int countersign_evp_pkey_keypair_selection(void);

/* A P-256 public key from its uncompressed point (0x04 || X || Y), by EVP_PKEY_fromdata with
 * OSSL_PARAM_construct_* (macros and stack arrays Swift cannot build). OpenSSL checks that the
 * point is on the curve; NULL when it is not. */
struct evp_pkey_st *countersign_p256_public_key(const unsigned char *point, size_t length);

#endif
