# ACL policy of meshproxy's token ([mesh] token), the same on every node.
#   consul acl policy create -name meshproxy -rules @meshproxy-policy.hcl

# GET /v1/agent/self: the local agent's node name (meshproxy's identity).
agent_prefix "" {
  policy = "read"
}

# Register, deregister, maintenance and TTL passes of its own services; with the default
# [mesh] service = "meshproxy" they are meshproxy-imap, -imaps, -pop3, -pop3s.
service_prefix "meshproxy-" {
  policy = "write"
}

# Read the catalog and health of those services on every node (without node:read Consul
# silently filters the entries out: peers would look unknown).
node_prefix "" {
  policy = "read"
}
