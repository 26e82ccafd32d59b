//! What the credential steps share: bound statements, and handing generated secrets to the
//! sink before the commit.

use super::{bounded, TenantWork};
use crate::apply::RunError;
use serde_json::json;

impl TenantWork<'_, '_> {
    /// Runs one bound statement of the credential steps.
    pub(super) async fn credential_statement(
        &self,
        operation: String,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), RunError> {
        let deadline = self.context.timeouts.client_deadline();
        bounded(deadline, operation.clone(), async {
            self.transaction
                .execute(sql, parameters)
                .await
                .map(|_| ())
                .map_err(crate::backend::postgres::query_error(operation.clone()))
        })
        .await
    }

    /// Hands what this change generated to the secrets sink, before the commit: a sink that
    /// fails rolls the tenant back.
    pub(super) async fn deliver(&mut self, role: &str) -> Result<(), RunError> {
        let generated = self.generated.password.is_some() || !self.generated.api_keys.is_empty();
        let Some(sink) = &self.context.secrets else {
            if !generated {
                // Only revocations: nothing secret to hand over, and nobody to tell.
                return Ok(());
            }
            return Err(RunError::NoSecretsSink {
                tenant: self.tenant.to_string(),
            });
        };
        let password = match &self.generated.password {
            Some(generated) => {
                let url = self.urls.for_role(role, generated.password.expose())?;
                Some((
                    generated.password.clone(),
                    crate::secrets::Secret::from(url),
                ))
            }
            None => None,
        };
        let secrets = crate::secrets::TenantSecrets {
            tenant: self.tenant.to_string(),
            role: role.to_string(),
            password,
            api_keys: std::mem::take(&mut self.generated.api_keys),
            revoked: std::mem::take(&mut self.generated.revoked),
        };
        sink.deliver(&secrets).await?;
        self.credential_events.push((
            "secrets_delivered",
            json!({
                "to": sink.to_string(),
                "password": secrets.password.is_some(),
                "api_keys": secrets.api_keys.iter().map(|key| &key.prefix).collect::<Vec<_>>(),
            }),
        ));
        Ok(())
    }
}
