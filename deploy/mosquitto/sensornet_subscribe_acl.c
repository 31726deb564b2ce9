/*
 * sensornet_subscribe_acl: refuse SUBSCRIBE for filters the ACL file grants no read of.
 *
 * Why: Mosquitto 2.0's acl_file check answers every SUBSCRIBE with success
 * (src/security_default.c, mosquitto_acl_check_default: "FIXME - implement ACL
 * subscription strings") and checks the ACL only when a message is delivered. So a
 * device that subscribes to "#" gets QoS 0 granted in its SUBACK, and nothing arrives:
 * it cannot tell a refusal from silence. handle_subscribe.c turns MOSQ_ERR_ACL_DENIED
 * from the ACL check chain into a refused SUBACK (0x80, MQTT 5: 0x87 not authorized),
 * and plugin callbacks run before the acl_file's own (they are registered first). This
 * plugin reads the same ACL file and, for SUBSCRIBE only, answers DENIED unless a read
 * grant of the client ("user" block "topic read|readwrite", or a "pattern" with %u/%c
 * substituted) covers every topic the filter can match; otherwise it defers, and the
 * acl_file's rules decide every delivery as before. "$share/<group>/<filter>" is judged
 * by <filter>. The file is read again on every reload (SIGHUP), like the acl_file.
 *
 * Configuration (docs/security.md, "Subscriptions"):
 *   plugin /path/to/sensornet_subscribe_acl.so
 *   plugin_opt_acl_file /path/to/the/acl_file
 *
 * Built by wiring/mosquitto_plugin.py (cc -shared -fPIC; headers from mosquitto-dev).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

struct grant {
	char *user;   /* NULL: a pattern, for every client */
	char *filter; /* may hold %u / %c when a pattern */
};

static mosquitto_plugin_id_t *plugin_id;
static char *acl_path;
static struct grant *grants;
static size_t grant_count;

static void free_grants(struct grant *list, size_t count)
{
	for(size_t i = 0; i < count; i++){
		free(list[i].user);
		free(list[i].filter);
	}
	free(list);
}

static char *trim(char *s)
{
	while(*s == ' ' || *s == '\t') s++;
	size_t n = strlen(s);
	while(n && (s[n-1] == '\n' || s[n-1] == '\r' || s[n-1] == ' ' || s[n-1] == '\t')) s[--n] = '\0';
	return s;
}

/* "read"/"readwrite" grant reading; "write"/"deny" do not; no access word is readwrite. */
static const char *read_filter(char *rest)
{
	char *space = strpbrk(rest, " \t");
	if(space){
		size_t n = (size_t)(space - rest);
		if(!strncmp(rest, "read", n) && n == 4) return trim(space);
		if(!strncmp(rest, "readwrite", n) && n == 9) return trim(space);
		if((!strncmp(rest, "write", n) && n == 5) || (!strncmp(rest, "deny", n) && n == 4)) return NULL;
	}
	return rest;
}

static int load(const char *path, struct grant **out, size_t *out_count)
{
	FILE *f = fopen(path, "r");
	if(!f) return MOSQ_ERR_UNKNOWN;
	struct grant *list = NULL;
	size_t count = 0;
	char *user = NULL;
	char line[4096];
	int rc = MOSQ_ERR_SUCCESS;
	while(fgets(line, sizeof(line), f)){
		char *s = trim(line);
		bool pattern = !strncmp(s, "pattern ", 8);
		if(!strncmp(s, "user ", 5)){
			free(user);
			user = strdup(trim(s + 5));
			if(!user){ rc = MOSQ_ERR_NOMEM; break; }
			continue;
		}
		if(!pattern && strncmp(s, "topic ", 6)) continue; /* comments, blank lines */
		const char *filter = read_filter(trim(s + (pattern ? 8 : 6)));
		if(!filter || !*filter) continue;
		struct grant *grown = realloc(list, (count + 1) * sizeof(*list));
		if(!grown){ rc = MOSQ_ERR_NOMEM; break; }
		list = grown;
		list[count].user = NULL;
		if(!pattern && user){
			list[count].user = strdup(user);
		}else if(!pattern){
			/* a topic line before any user line is for anonymous clients: none here */
			continue;
		}
		list[count].filter = strdup(filter);
		if(!list[count].filter || (!pattern && !list[count].user)){
			free(list[count].user);
			free(list[count].filter);
			rc = MOSQ_ERR_NOMEM;
			break;
		}
		count++;
	}
	free(user);
	fclose(f);
	if(rc != MOSQ_ERR_SUCCESS){
		free_grants(list, count);
		return rc;
	}
	*out = list;
	*out_count = count;
	return MOSQ_ERR_SUCCESS;
}

/* Does the read grant `g` cover every topic the subscription filter `f` can match? */
static bool covers(const char *g, const char *f)
{
	for(;;){
		size_t gl = strcspn(g, "/"), fl = strcspn(f, "/");
		if(gl == 1 && g[0] == '#') return true;
		if(fl == 1 && f[0] == '#') return false;
		if(!(gl == 1 && g[0] == '+')){
			if(fl == 1 && f[0] == '+') return false;
			if(gl != fl || strncmp(g, f, gl)) return false;
		}
		g += gl;
		f += fl;
		if(!*g && !*f) return true;
		if(!*f) return !strcmp(g, "/#"); /* "a/#" also matches "a" */
		if(!*g) return false;
		g++;
		f++;
	}
}

/* A pattern with %u and %c replaced; NULL when it names a username the client lacks. */
static char *expand(const char *pattern, const char *username, const char *client_id)
{
	size_t n = strlen(pattern) + 1;
	for(const char *p = pattern; *p; p++){
		if(p[0] == '%' && p[1] == 'u'){
			if(!username) return NULL;
			n += strlen(username);
		}else if(p[0] == '%' && p[1] == 'c'){
			n += strlen(client_id);
		}
	}
	char *out = malloc(n), *o = out;
	if(!out) return NULL;
	for(const char *p = pattern; *p; p++){
		if(p[0] == '%' && (p[1] == 'u' || p[1] == 'c')){
			const char *with = p[1] == 'u' ? username : client_id;
			size_t len = strlen(with);
			memcpy(o, with, len);
			o += len;
			p++;
		}else{
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	(void)event;
	(void)userdata;
	if(ed->access != MOSQ_ACL_SUBSCRIBE) return MOSQ_ERR_PLUGIN_DEFER;

	const char *username = mosquitto_client_username(ed->client);
	const char *client_id = mosquitto_client_id(ed->client);
	const char *filter = ed->topic;
	if(!strncmp(filter, "$share/", 7)){
		filter = strchr(filter + 7, '/');
		if(!filter) return MOSQ_ERR_ACL_DENIED;
		filter++;
	}
	/* as the acl_file does: a + or # in a name would widen every pattern */
	bool dangerous = (username && strpbrk(username, "+#")) || (client_id && strpbrk(client_id, "+#"));
	for(size_t i = 0; i < grant_count; i++){
		const struct grant *g = &grants[i];
		if(g->user){
			if(!username || strcmp(g->user, username)) continue;
			if(covers(g->filter, filter)) return MOSQ_ERR_PLUGIN_DEFER;
		}else if(!dangerous && client_id){
			char *mine = expand(g->filter, username, client_id);
			if(!mine) continue;
			bool ok = covers(mine, filter);
			free(mine);
			if(ok) return MOSQ_ERR_PLUGIN_DEFER;
		}
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"sensornet_subscribe_acl: refused %s (user %s) the subscription %s",
			client_id ? client_id : "?", username ? username : "-", ed->topic);
	return MOSQ_ERR_ACL_DENIED;
}

static int on_reload(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	(void)userdata;
	struct grant *fresh = NULL;
	size_t count = 0;
	if(load(acl_path, &fresh, &count) != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_ERR,
				"sensornet_subscribe_acl: cannot read %s; keeping the previous grants", acl_path);
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	free_grants(grants, grant_count);
	grants = fresh;
	grant_count = count;
	return MOSQ_ERR_PLUGIN_DEFER;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	(void)supported_version_count;
	(void)supported_versions;
	return 5;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data,
		struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	plugin_id = identifier;
	for(int i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "acl_file")){
			acl_path = strdup(opts[i].value);
		}
	}
	if(!acl_path){
		mosquitto_log_printf(MOSQ_LOG_ERR, "sensornet_subscribe_acl: plugin_opt_acl_file is required");
		return MOSQ_ERR_INVAL;
	}
	if(load(acl_path, &grants, &grant_count) != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_ERR, "sensornet_subscribe_acl: cannot read %s", acl_path);
		return MOSQ_ERR_INVAL;
	}
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS) return rc;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_RELOAD, on_reload, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_RELOAD, on_reload, NULL);
	free_grants(grants, grant_count);
	grants = NULL;
	grant_count = 0;
	free(acl_path);
	acl_path = NULL;
	return MOSQ_ERR_SUCCESS;
}
