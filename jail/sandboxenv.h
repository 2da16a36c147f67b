/* sandboxenv.h -- what a sandbox needs to use egressd: the `env` and `ca`
 * commands, the CA bundle file, and the default state directory */
#ifndef EGRESSD_SANDBOXENV_H
#define EGRESSD_SANDBOXENV_H

struct policy;

/* The state dir when --state-dir is not given: /var/lib/egressd for root,
 * else $XDG_STATE_HOME/egressd or $HOME/.local/state/egressd. Static storage. */
const char *sandboxenv_default_state_dir(void);

/* Writes STATE_DIR/ca-bundle.pem (system CAs + egressd CA + upstream_ca if
 * any) and the same certificates as a Java truststore,
 * STATE_DIR/ca-truststore.p12 (PKCS#12, each entry trusted as Java's keytool
 * marks it), atomically, mode 0644. Returns 0 or -1 with a message on
 * stderr. */
#define SANDBOXENV_TRUSTSTORE_PASSWORD "changeit" /* Java's usual; guards nothing */
int sandboxenv_write_bundle(const char *state_dir, const char *upstream_ca);

/* Prints NAME=VALUE to stdout, VALUE single-quoted when a shell would need it
 * (`egressd env` and `egressd sandbox env`). */
void sandboxenv_put_sh(const char *name, const char *val);

/* `egressd env`: prints the variables in format "sh" (NAME=VALUE lines,
 * single-quoted for the shell when needed; NULL is sh too), "dotenv"
 * (NAME=VALUE, double-quoted when needed) or "json" (one object). Returns
 * the exit status (2 for an unknown format). */
int sandboxenv_cmd_env(const struct policy *p, const char *state_dir, const char *listen,
		       const char *upstream_ca, const char *format);
/* `egressd ca init|show`. Returns the exit status. */
int sandboxenv_cmd_ca(int argc, char **argv, const char *state_dir, const char *keytype);

#endif
