"""The hub chain: its registry of organizations, members, applications and business chains."""

from zhongshu.hub.chains import (
    ChainRecord,
    ChainSpecError,
    derive_genesis,
    derive_genesis_from_state,
    get_chain,
    list_chains,
)
from zhongshu.hub.registry import (
    AppKeyView,
    AppRecord,
    build_hub_registry,
    get_app,
    get_app_by_key,
    is_granted,
)
from zhongshu.hub.roles import (
    MemberRecord,
    NodeKeys,
    OrgRecord,
    get_member,
    get_org,
    hub_genesis_writes,
    list_nodes,
)

__all__ = [
    "AppKeyView",
    "AppRecord",
    "ChainRecord",
    "ChainSpecError",
    "MemberRecord",
    "NodeKeys",
    "OrgRecord",
    "build_hub_registry",
    "derive_genesis",
    "derive_genesis_from_state",
    "get_app",
    "get_app_by_key",
    "get_chain",
    "get_member",
    "get_org",
    "hub_genesis_writes",
    "is_granted",
    "list_chains",
    "list_nodes",
]
