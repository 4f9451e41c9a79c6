#include "COpenSSLShims.h"
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

void countersign_openssl_free(void *pointer) { OPENSSL_free(pointer); }

long countersign_bio_get_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

int countersign_ssl_ctx_set_min_proto_version(SSL_CTX *context, int version) {
    return (int)SSL_CTX_set_min_proto_version(context, version);
}

int countersign_ssl_ctx_set_max_proto_version(SSL_CTX *context, int version) {
    return (int)SSL_CTX_set_max_proto_version(context, version);
}

int countersign_evp_pkey_keypair_selection(void) { return EVP_PKEY_KEYPAIR; }
