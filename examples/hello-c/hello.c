/*
 * hello-c: the hello/echo function in C, a WASI 0.1 command run CGI-style.
 *
 * Build with Debian's clang and wasi-libc (apt install clang lld wasi-libc
 * libclang-rt-dev-wasm32), deploy and call (from the repository root, with `wafer up` running):
 *
 *   wafer deploy examples/hello-c              # builds first if needed
 *   curl http://127.0.0.1:8080/hello-c/x?y=1   # Hello from wafer! (GET /hello-c/x?y=1) [c]
 *   curl -d 'echo me' http://127.0.0.1:8080/hello-c
 *
 * The request arrives as CGI variables (REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING,
 * HTTP_*) and the body on stdin; the answer is headers, a blank line, then the body, on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env(const char *name) {
    const char *value = getenv(name);
    return value ? value : "";
}

int main(void) {
    const char *method = env("REQUEST_METHOD");
    const char *query = env("QUERY_STRING");
    fprintf(stderr, "%s %s%s%s%s\n", method, env("SCRIPT_NAME"), env("PATH_INFO"),
            *query ? "?" : "", query);

    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        printf("Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
        printf("Hello from wafer! (%s %s%s%s%s) [c]\n", method, env("SCRIPT_NAME"),
               env("PATH_INFO"), *query ? "?" : "", query);
        return 0;
    }

    printf("Content-Type: text/plain; charset=utf-8\r\n\r\n");
    char buf[16384];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        fwrite(buf, 1, n, stdout);
    }
    return 0;
}
