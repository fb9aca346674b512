//! Answer verification: a forge answer becomes a [`VerifiedView`] only when its signature,
//! env, addressee and binding to our own request check out. Role decisions take nothing else.
use brh_shared::sign::{verify_basis, verify_public_view, verify_view};
use brh_shared::wire::{LeaderView, StreamMessage};

/// A leader view whose signature, env and addressee were checked. Only [`VerifiedView::check`]
/// makes one, so role decisions can never be fed an unverified grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedView(LeaderView);

/// Why a forge answer was not accepted as a view. All of these are treated like an
/// unreachable forge, never as a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("the forge's answer is not signed for this node (or, if public, by the forge key)")]
    BadSignature,
    #[error("the forge's answer is for env {got:?}, not {want:?}")]
    WrongEnv { got: String, want: String },
    #[error("the forge's answer is addressed to {got:?}, not to this node")]
    WrongNode { got: Option<String> },
    #[error("the forge's answer is not bound to our request (basis, basis_sig)")]
    Unbound,
}

/// What an agent checks the forge's word with. Neither key lets its holder sign for anyone
/// else: the node key makes views only this node accepts (the forge derives it; see
/// `brh_shared::keys`), the forge key is public.
#[derive(Clone)]
pub struct ViewKeys {
    /// This node and its key: answers and pushes to it are HMACs under that key. `None` for a
    /// reader that is no node (`brh-agent status`): it accepts public views only.
    pub node: Option<(String, [u8; 32])>,
    /// The forge's public key: public views (`GET /federation/leader`) are Ed25519 under it.
    pub forge: ed25519_dalek::VerifyingKey,
}

impl std::fmt::Debug for ViewKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewKeys")
            .field("node", &self.node.as_ref().map(|(n, _)| n))
            .field("forge", &brh_shared::keys::public_hex(&self.forge))
            .finish()
    }
}

impl ViewKeys {
    fn node_key(&self) -> &[u8] {
        self.node.as_ref().map_or(&[], |(_, k)| k.as_slice())
    }

    /// A view addressed to a node (`you`) must be addressed to us and signed with our key; a
    /// public view must carry the forge's signature.
    fn verify(&self, view: &LeaderView) -> bool {
        match (&view.you, &self.node) {
            (Some(you), Some((me, key))) => you.node == *me && verify_view(key, view),
            (Some(_), None) => false,
            (None, _) => verify_public_view(&self.forge, view),
        }
    }
}

impl VerifiedView {
    /// Verifies `view` for `node` in `env`. With `node = None` (a public `GET` answer) the
    /// `you` field is not required.
    pub fn check(
        keys: &ViewKeys,
        env: &str,
        node: Option<&str>,
        view: LeaderView,
    ) -> Result<Self, ViewError> {
        if !keys.verify(&view) {
            return Err(ViewError::BadSignature);
        }
        if view.env != env {
            return Err(ViewError::WrongEnv {
                got: view.env,
                want: env.into(),
            });
        }
        if let Some(node) = node {
            if view.you.as_ref().map(|y| y.node.as_str()) != Some(node) {
                return Err(ViewError::WrongNode {
                    got: view.you.map(|y| y.node),
                });
            }
        }
        Ok(VerifiedView(view))
    }

    /// Verifies a view that came on the forge's stream for `node`, bound to our request
    /// `nonce` (an answer's, or a push's basis): the view's own checks, then `basis_sig`,
    /// which the forge computed over the node, the nonce and the view's signature. Without
    /// it an on-path attacker could relabel an old grant as the answer to a newer request.
    pub fn check_bound(
        keys: &ViewKeys,
        env: &str,
        node: &str,
        m: &StreamMessage,
        nonce: &str,
    ) -> Result<Self, ViewError> {
        let view = m.view.clone().ok_or(ViewError::Unbound)?;
        let (basis, basis_sig) = (m.basis.as_deref(), m.basis_sig.as_deref());
        Self::check_answer(keys, env, node, view, basis, basis_sig, nonce)
    }

    /// Verifies the view answering our request `nonce` over HTTP, bound to it by the
    /// answer's `x-brh-basis` / `x-brh-basis-sig` headers: the same binding as
    /// [`Self::check_bound`]. Plain HTTP ties nothing else to the request, so without it a
    /// captured grant could be replayed as the answer to a later heartbeat and be measured
    /// from that heartbeat's send time.
    pub fn check_answer(
        keys: &ViewKeys,
        env: &str,
        node: &str,
        view: LeaderView,
        basis: Option<&str>,
        basis_sig: Option<&str>,
        nonce: &str,
    ) -> Result<Self, ViewError> {
        let bound = basis == Some(nonce)
            && basis_sig.is_some_and(|s| verify_basis(keys.node_key(), node, nonce, &view.sig, s));
        if !bound {
            return Err(ViewError::Unbound);
        }
        Self::check(keys, env, Some(node), view)
    }

    pub fn view(&self) -> &LeaderView {
        &self.0
    }

    /// For tests of the pure logic: wraps a view without checking it.
    #[cfg(test)]
    pub fn assume_verified(view: LeaderView) -> Self {
        VerifiedView(view)
    }
}
