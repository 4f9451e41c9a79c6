/*
 * make bench: the cost of one Ed25519 signature in the two libraries the anonymous row
 * compares. kmsd signs with OpenSSL (EVP_DigestSign from a kept context, as KMSCrypto does);
 * Knot's onlinesign signs through GnuTLS, whose Ed25519 is nettle's. The same 300-byte
 * message (about a kms1:answer's signed text) and the same key for both.
 *
 * Prints one line: "openssl US nettle US" (microseconds per signature, median of 5 rounds).
 * Build: cc -O2 ed25519-sign-speed.c -lcrypto -lnettle -lhogweed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <nettle/eddsa.h>
#include <openssl/evp.h>

enum { ROUNDS = 5, SIGNATURES = 4000, MESSAGE = 300 };

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int ascending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    unsigned char private_key[32], public_key[32], message[MESSAGE], signature[64], check[64];
    for (int i = 0; i < 32; i++) private_key[i] = (unsigned char)(i * 7 + 1);
    memset(message, 'k', sizeof message);
    ed25519_sha512_public_key(public_key, private_key);

    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, private_key, sizeof private_key);
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    if (key == NULL || context == NULL || EVP_DigestSignInit(context, NULL, NULL, NULL, key) != 1) {
        fprintf(stderr, "ed25519-sign-speed: OpenSSL cannot sign with Ed25519\n");
        return 1;
    }
    /* Both must make the same (deterministic) signature, or the comparison is of different work. */
    size_t length = sizeof signature;
    ed25519_sha512_sign(public_key, private_key, sizeof message, message, check);
    if (EVP_DigestSign(context, signature, &length, message, sizeof message) != 1 || length != 64
        || memcmp(signature, check, 64) != 0) {
        fprintf(stderr, "ed25519-sign-speed: OpenSSL and nettle disagree on a signature\n");
        return 1;
    }

    double openssl[ROUNDS], nettle[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        double start = seconds();
        for (int i = 0; i < SIGNATURES; i++) {
            length = sizeof signature;
            EVP_DigestSign(context, signature, &length, message, sizeof message);
        }
        openssl[round] = (seconds() - start) / SIGNATURES * 1e6;
        start = seconds();
        for (int i = 0; i < SIGNATURES; i++) ed25519_sha512_sign(public_key, private_key, sizeof message, message, signature);
        nettle[round] = (seconds() - start) / SIGNATURES * 1e6;
    }
    qsort(openssl, ROUNDS, sizeof openssl[0], ascending);
    qsort(nettle, ROUNDS, sizeof nettle[0], ascending);
    printf("openssl %.1f nettle %.1f\n", openssl[ROUNDS / 2], nettle[ROUNDS / 2]);
    EVP_MD_CTX_free(context);
    EVP_PKEY_free(key);
    return 0;
}
