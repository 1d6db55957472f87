# Consul client agent on a meshproxy node: /etc/consul.d/agent.hcl
# (Consul servers run elsewhere; this agent joins them.)

datacenter = "dc1"
# The node's name in the mesh: accounts' "mailhost" names it, and meshproxy answers to it.
node_name  = "mx1"
data_dir   = "/var/lib/consul"

# The address peers reach this node at: meshproxy registers its wildcard listeners
# (0.0.0.0:143 ...) under the agent's address, so make it the address IMAP clients and
# other nodes use.
bind_addr      = "10.0.0.11"
advertise_addr = "10.0.0.11"
# meshproxy talks to the local agent only; keep the HTTP API on loopback.
client_addr    = "127.0.0.1"
ports {
  http = 8500
}

retry_join = ["consul1.example.net", "consul2.example.net", "consul3.example.net"]

encrypt = "REPLACE-WITH-consul-keygen-OUTPUT"

acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
  tokens {
    # This agent's own token (node identity "mx1:dc1").  Not meshproxy's token.
    agent = "REPLACE-WITH-THE-AGENT-TOKEN"
  }
}

# Checks meshproxy registers are TTL and TCP checks: no script checks are needed.
enable_script_checks       = false
enable_local_script_checks = false
