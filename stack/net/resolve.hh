// Name resolution through the syscall pool: getaddrinfo never blocks the reactor.
#pragma once

#include "runtime/future.hh"
#include "stack/net/socket_address.hh"

#include <string>
#include <system_error>
#include <vector>

namespace reef::net {

/// The category of resolve errors: the codes are getaddrinfo's EAI_* values (e.g. EAI_NONAME), and
/// message() is gai_strerror's text. (EAI_SYSTEM failures carry errno in std::system_category.)
const std::error_category& resolve_category() noexcept;

/// The first address getaddrinfo gives for `host`. A numeric address (IPv6 with an optional
/// "%scope") is returned without a lookup or a trip to the syscall pool; a name is looked up in
/// engine().run_blocking(), so the reactor never blocks. Call on a shard (a running reactor).
/// Fails with std::system_error naming the host and the resolver's reason, e.g.
/// "resolve(no.such.host): Name or service not known", whose code() is in resolve_category().
future<inet_address> resolve(std::string host);
/// The same, restricted to one family. A numeric address of the other family fails
/// (EAI_ADDRFAMILY).
future<inet_address> resolve(std::string host, inet_address::family f);
/// Every address the name has, in getaddrinfo's order, duplicates removed.
future<std::vector<inet_address>> resolve_all(std::string host);

}  // namespace reef::net
