/*
 * The RTP payload ciphers of docs/rtp-encryption.md in C, for the relay's receive loop
 * (b2bua/media/_pump.c). Plain C over libcrypto: no Python objects here.
 *
 * A cipher holds its key material (and, for RC4 and AES128, its libcrypto contexts) for
 * the life of a call leg; rtp_cipher_apply() XORs one packet's keystream onto its
 * payload in place. Every mode is its own inverse, as in the Python ciphers
 * (b2bua/media/cipher.py), byte for byte.
 */
#ifndef B2BUA_RTPCIPHER_H
#define B2BUA_RTPCIPHER_H

#include <stddef.h>

#define RTPC_XOR 1
#define RTPC_RC4 2
#define RTPC_AES128 3

typedef struct rtp_cipher rtp_cipher;

/* A cipher for SS_RTPENCRYPTIONMODE `mode` (1-3) with `key`; NULL with `*why` set (a
 * static message, valid until the next call) for an unknown mode, a key the mode cannot
 * use, or a library failure. Called with the GIL held. */
rtp_cipher *rtp_cipher_new(int mode, const unsigned char *key, size_t keylen,
                           const char **why);
void rtp_cipher_free(rtp_cipher *c);

/* XOR this packet's keystream onto packet[offset:len] (offset: a validated RTP payload
 * offset, 12 <= offset <= len). 0 on success; -1 when libcrypto failed, and then the
 * payload is in an unspecified state and must not be sent. */
int rtp_cipher_apply(rtp_cipher *c, unsigned char *packet, size_t offset, size_t len);

/* For tests: the next `n` applications fail as a libcrypto failure would. */
void rtp_cipher_inject_failures(rtp_cipher *c, unsigned n);

/* For tests: `n` bytes of the raw RC4 keystream for `key` (RFC 6229's vectors). */
void rtp_rc4_keystream(const unsigned char *key, size_t keylen, unsigned char *out,
                       size_t n);

#endif
