/* sbxclient.c -- `egressd sandbox`: builds the request (a JSON file or the
 * options), sends it over the control socket, prints the answer */
#include "sbxclient.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netdb.h>

#include <openssl/crypto.h>
#include <unistd.h>

#include <jansson.h>

#include "alloc.h"
#include "sandboxenv.h"

#define ANSWER_MAX (64 << 20)

struct sbxflags {
	json_t *body; /* the sandbox as the API takes it */
};

struct sbxflags *sbxflags_new(void)
{
	struct sbxflags *f = xcalloc(1, sizeof(*f));

	f->body = json_object();
	return f;
}

void sbxflags_free(struct sbxflags *f)
{
	if (!f)
		return;
	json_decref(f->body); /* egressd's jansson frees wipe (config.c) */
	free(f);
}

/* Appends each comma-separated piece of arg to the array body[key]. */
static void add_list(json_t *body, const char *key, const char *arg)
{
	json_t *arr = json_object_get(body, key);
	const char *s = arg;

	if (!arr) {
		arr = json_array();
		json_object_set_new(body, key, arr);
	}
	while (*s) {
		size_t n = strcspn(s, ",");
		json_array_append_new(arr, json_stringn(s, n));
		s += n + (s[n] == ',');
	}
}

bool sbxflags_add(struct sbxflags *f, const char *key, const char *arg, char *err)
{
	const char *eq, *val;
	char name[256];
	json_t *sec, *secrets;

	if (strcmp(key, "secret") != 0) {
		add_list(f->body, key, arg);
		return true;
	}
	eq = strchr(arg, '=');
	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(name)) {
		snprintf(err, SBXCLIENT_ERRLEN, "invalid --secret \"%.100s\" (want NAME=HOST[,HOST...])",
			 arg);
		return false;
	}
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	if (!(val = getenv(name)) || !*val) {
		snprintf(err, SBXCLIENT_ERRLEN, "--secret %.100s: the environment variable %.100s (its value) "
			 "is not set", name, name);
		return false;
	}
	if (!(secrets = json_object_get(f->body, "secrets"))) {
		secrets = json_object();
		json_object_set_new(f->body, "secrets", secrets);
	}
	sec = json_object();
	add_list(sec, "hosts", eq + 1);
	json_object_set_new(sec, "value", json_string(val));
	json_object_set_new(secrets, name, sec);
	return true;
}

/* Reads a whole file ('-': stdin) into a new string; NULL on error. */
static char *read_all(const char *path, size_t *len)
{
	FILE *in = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	char *buf = NULL;
	size_t cap = 0, n = 0, got;

	if (!in)
		return NULL;
	do {
		if (n + 65536 > cap) {
			char *nb = xmalloc(cap = cap * 2 + 65536);
			if (buf) {
				memcpy(nb, buf, n);
				xwipe(buf, n);
				free(buf);
			}
			buf = nb;
		}
		got = fread(buf + n, 1, cap - n - 1, in);
		n += got;
	} while (got > 0 && n < ANSWER_MAX);
	if (in != stdin)
		fclose(in);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* One request on the control socket; the answer's status, and its body in
 * *answer (a new string). -1 with a message on stderr if egressd cannot be
 * reached or the answer is not HTTP. */
/* A connected socket to "unix:PATH" or "IP:PORT" ([v6]:PORT), or -1 with a
 * message on stderr. */
static int dial(const char *control)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST },
			*ai = NULL;
	char host[128];
	const char *colon = strrchr(control, ':');
	int fd = -1;

	if (strncmp(control, "unix:", 5) == 0) {
		if (strlen(control + 5) >= sizeof(sun.sun_path))
			goto bad;
		memcpy(sun.sun_path, control + 5, strlen(control + 5) + 1);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return fd;
		goto fail;
	}
	if (!colon || (size_t)(colon - control) >= sizeof(host))
		goto bad;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - control), control);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
		goto bad;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
		freeaddrinfo(ai);
		return fd;
	}
	freeaddrinfo(ai);
fail:
	fprintf(stderr, "egressd: cannot reach egressd at %s: %s\n", control, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
bad:
	fprintf(stderr, "egressd: invalid --control \"%s\" (want unix:PATH or IP:PORT)\n", control);
	return -1;
}

static int call(const char *control, const char *token, const char *method, const char *path,
		const char *body, size_t blen, char **answer)
{
	const char *sock = control;
	char head[1024], *buf = NULL, *p;
	size_t n = 0, cap = 0;
	ssize_t got;
	int fd, status = -1;

	if ((fd = dial(control)) < 0)
		return -1;
	snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: egressd\r\nContent-Type: "
				     "application/json\r\nContent-Length: %zu\r\n%s%s%s"
				     "Connection: close\r\n\r\n",
		 method, path, blen, token ? "Authorization: Bearer " : "", token ? token : "",
		 token ? "\r\n" : "");
	if (send(fd, head, strlen(head), MSG_NOSIGNAL) < 0 ||
	    (blen && send(fd, body, blen, MSG_NOSIGNAL) < 0)) {
		fprintf(stderr, "egressd: %s: %s\n", sock, strerror(errno));
		goto out;
	}
	for (;;) {
		if (n + 65536 > cap)
			buf = xrealloc(buf, cap = cap * 2 + 65536);
		got = read(fd, buf + n, cap - n - 1);
		if (got <= 0 || (n += (size_t)got) > ANSWER_MAX)
			break;
	}
	if (!buf || n < 12 || strncmp(buf, "HTTP/1.1 ", 9) != 0 ||
	    !(p = strstr((buf[n] = '\0', buf), "\r\n\r\n"))) {
		fprintf(stderr, "egressd: %s: not an HTTP answer\n", sock);
		goto out;
	}
	status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	*answer = xstrdup(p + 4);
out:
	free(buf);
	OPENSSL_cleanse(head, sizeof(head));
	close(fd);
	return status;
}

static void print_env(const json_t *env)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)env, k, v)
		if (json_is_string(v))
			sandboxenv_put_sh(k, json_string_value(v));
}

static void print_list(const json_t *ans)
{
	size_t i;
	json_t *sb;

	json_array_foreach(json_object_get(ans, "sandboxes"), i, sb) {
		json_t *src = json_object_get(sb, "source"), *ls = json_object_get(sb, "listen");
		char *s = src ? json_dumps(src, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		char *l = ls ? json_dumps(ls, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		printf("%s source=%s listen=%s connections=%lld\n",
		       json_string_value(json_object_get(sb, "name")), s ? s : "-", l ? l : "-",
		       (long long)json_integer_value(json_object_get(sb, "connections")));
		free(s);
		free(l);
	}
}

/* The token file's first line (a new string), or NULL with a message. */
static char *read_token(const char *file)
{
	size_t n = 0;
	char *t = read_all(file, &n);

	if (!t) {
		fprintf(stderr, "egressd: cannot read %s: %s\n", file, strerror(errno));
		return NULL;
	}
	t[strcspn(t, "\r\n")] = '\0';
	if (strlen(t) > 512) {
		fprintf(stderr, "egressd: %s: the token is too long\n", file);
		xwipe(t, n);
		free(t);
		return NULL;
	}
	return t;
}

int sbxclient_main(const char *control, const char *token_file, const char *sub,
		   const char *name, const char *file, const struct sbxflags *flags)
{
	char path[128], *body = NULL, *answer = NULL, *token = NULL;
	size_t blen = 0;
	json_t *ans = NULL;
	int status, rc = 1;
	bool put = sub && !strcmp(sub, "put"), ls = sub && !strcmp(sub, "ls");

	if (!control || !sub || (strcmp(sub, "put") && strcmp(sub, "rm") && strcmp(sub, "env") &&
				 !ls) || (!ls && !name) || (ls && name)) {
		fprintf(stderr, "egressd: usage: egressd sandbox put|rm|env NAME | ls  "
				"--control unix:PATH\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/sandboxes%s%.80s", name ? "/" : "", name ? name : "");
	if (put && file && !(body = read_all(file, &blen))) {
		fprintf(stderr, "egressd: cannot read %s: %s\n", file, strerror(errno));
		return 2;
	}
	if (put && !file) {
		body = json_dumps(flags->body, JSON_COMPACT);
		blen = strlen(body);
	}
	if (token_file && !(token = read_token(token_file))) {
		rc = 2;
		goto out;
	}
	status = call(control, token, put ? "PUT" : !strcmp(sub, "rm") ? "DELETE" : "GET", path,
		      body, blen, &answer);
	if (status < 0)
		goto out;
	ans = json_loads(answer, 0, NULL);
	if (status >= 300 || !ans) {
		const char *e = json_string_value(json_object_get(ans, "error"));
		const char *w = json_string_value(json_object_get(ans, "path"));
		fprintf(stderr, "egressd: %d: %s%s%s\n", status, e ? e : answer, w ? " at " : "",
			w ? w : "");
		goto out;
	}
	if (ls)
		print_list(ans);
	else if (!strcmp(sub, "rm"))
		printf("deleted %s (closing %lld open connections)\n", name,
		       (long long)json_integer_value(json_object_get(ans, "closing")));
	else
		print_env(json_object_get(ans, "env"));
	rc = 0;
out:
	json_decref(ans);
	free(answer);
	if (token) {
		OPENSSL_cleanse(token, strlen(token));
		free(token);
	}
	if (body) {
		xwipe(body, blen);
		free(body);
	}
	return rc;
}
