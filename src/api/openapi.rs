//! The OpenAPI 3 document served at `/api/v1/openapi.json`. A test checks that it names
//! exactly the routes of [`super::routes`], method by method.

use axum::Json;
use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string"}})
}

fn query_param(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description,
           "schema": {"type": kind}})
}

/// One operation: the common error answers are added to every authenticated one.
fn op(summary: &str, tag: &str, params: Value, body: Option<Value>, ok: (&str, Value)) -> Value {
    let mut responses = json!({
        ok.0: ok.1,
        "400": error_response("Bad request: the message says which field or parameter"),
        "401": error_response("No or unknown credentials"),
        "403": error_response("The credentials may not do this"),
        "404": error_response("No such entry"),
        "503": error_response("Temporarily unavailable; retry after Retry-After seconds"),
    });
    if tag == "health" {
        responses = json!({ ok.0: ok.1, "503": error_response("Not ready") });
    }
    let mut o = json!({
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": responses,
    });
    if tag == "health" {
        o["security"] = json!([]);
    }
    if let Some(b) = body {
        o["requestBody"] = b;
    }
    o
}

fn json_body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn any_json(description: &str) -> (&'static str, Value) {
    ("200", json_response(description, json!({"type": "object"})))
}

pub fn document() -> Value {
    let id = path_param("id", "Mailbox entry id");
    let admin_list = |what: &str, filter: bool| {
        let params = if filter {
            json!([query_param("domain", "string", "Only this local domain")])
        } else {
            json!([])
        };
        op(
            &format!("List {what}"),
            "admin",
            params,
            None,
            any_json(what),
        )
    };
    let admin_delete = |what: &str, p: &str| {
        op(
            &format!("Remove {what}"),
            "admin",
            json!([path_param(p, what)]),
            None,
            any_json("The removed entry"),
        )
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "hisp HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Send Direct messages, read the mailbox, follow delivery, administer the gateway. Authenticate with a bearer token (hisp token create) or HTTP Basic with a Direct address and its password. Errors are {\"error\": {\"code\", \"message\"}}."
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Compose": {"type": "object", "properties": {
                    "from": {"type": "string", "description": "Defaults to the token's address; required for admin tokens"},
                    "to": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "cc": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "bcc": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "subject": {"type": "string"},
                    "text": {"type": "string"},
                    "attachments": {"type": "array", "items": {"type": "object",
                        "required": ["filename", "content_base64"],
                        "properties": {"filename": {"type": "string"}, "content_type": {"type": "string"},
                                       "content_base64": {"type": "string", "format": "byte"}}}}}},
                "Accepted": {"type": "object", "properties": {
                    "id": {"type": "string"}, "message_id": {"type": "string"}, "status": {"type": "string"}}},
                "NewDomain": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                "NewAddress": {"type": "object", "required": ["address"], "properties": {
                    "address": {"type": "string"}, "password": {"type": "string"}}},
                "NewBundle": {"type": "object", "required": ["name", "url", "domains"], "properties": {
                    "name": {"type": "string"}, "url": {"type": "string"},
                    "signer_pem": {"type": "string", "description": "Required when the bundle is signed"},
                    "domains": {"type": "array", "items": {"type": "string"}},
                    "incoming": {"type": "boolean"}, "outgoing": {"type": "boolean"},
                    "refresh": {"type": "string", "description": "e.g. 1h (default)"}}},
                "NewAnchor": {"type": "object", "required": ["domain", "pem"], "properties": {
                    "domain": {"type": "string"}, "pem": {"type": "string"},
                    "incoming": {"type": "boolean"}, "outgoing": {"type": "boolean"}}}
            }
        },
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/api/v1/messages": {"post": op(
                "Send a message through the submission pipeline (signed, encrypted, queued)",
                "messages", json!([]),
                Some(json!({"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Compose"}},
                    "message/rfc822": {"schema": {"type": "string", "format": "binary"}}}})),
                ("202", json_response("Queued", json!({"$ref": "#/components/schemas/Accepted"}))))},
            "/api/v1/messages/{message_id}/status": {"get": op(
                "Delivery state per recipient", "messages",
                json!([path_param("message_id", "Message-ID, with or without angle brackets")]),
                None, any_json("Tracking records"))},
            "/api/v1/mailbox": {"get": op(
                "List the caller's mailbox, oldest first", "mailbox",
                json!([query_param("after", "integer", "Only entries with a greater id (paging)"),
                       query_param("limit", "integer", "1-500, default 50"),
                       query_param("address", "string", "Admin tokens: whose mailbox")]),
                None, any_json("Entries and next_after"))},
            "/api/v1/mailbox/{id}": {
                "get": op("One message: JSON (headers, text, attachments) or raw with Accept: message/rfc822",
                          "mailbox", json!([id.clone()]), None, any_json("The message")),
                "delete": op("Delete a message", "mailbox", json!([id.clone()]), None,
                             ("204", json!({"description": "Deleted"})))},
            "/api/v1/mailbox/{id}/attachments/{index}": {"get": op(
                "Download an attachment", "mailbox",
                json!([id, path_param("index", "Attachment index from the JSON view")]),
                None, ("200", json!({"description": "The attachment bytes",
                    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})))},
            "/api/v1/admin/domains": {
                "get": admin_list("local domains", false),
                "post": op("Add a local domain", "admin", json!([]), Some(json_body("NewDomain")),
                           ("201", json!({"description": "Added"})))},
            "/api/v1/admin/domains/{name}": {"delete": admin_delete("a local domain", "name")},
            "/api/v1/admin/addresses": {
                "get": admin_list("local addresses", true),
                "post": op("Add a local address", "admin", json!([]), Some(json_body("NewAddress")),
                           ("201", json!({"description": "Added"})))},
            "/api/v1/admin/addresses/{address}": {"delete": admin_delete("a local address", "address")},
            "/api/v1/admin/certs": {"get": admin_list("local certificates (keys stay sealed)", false)},
            "/api/v1/admin/certs/{sha256}": {"delete": admin_delete("a local certificate and its key", "sha256")},
            "/api/v1/admin/anchors": {
                "get": admin_list("trust anchors", true),
                "post": op("Add trust anchors", "admin", json!([]), Some(json_body("NewAnchor")),
                           ("201", json!({"description": "Added or widened"})))},
            "/api/v1/admin/anchors/{id}": {"delete": admin_delete("a trust anchor", "id")},
            "/api/v1/admin/bundles": {
                "get": admin_list("trust bundles with their refresh state", false),
                "post": op("Add a trust bundle (fetched and verified now)", "admin", json!([]),
                           Some(json_body("NewBundle")), ("201", json!({"description": "Added"})))},
            "/api/v1/admin/bundles/{name}/refresh": {"post": op("Refresh a bundle now", "admin",
                json!([path_param("name", "Bundle name")]), None, any_json("Refresh outcome"))},
            "/api/v1/admin/bundles/{name}": {"delete": admin_delete("a trust bundle and its anchors", "name")},
            "/api/v1/admin/queue": {"get": op("The delivery queue", "admin",
                json!([query_param("all", "boolean", "Include finished entries")]), None, any_json("Queue entries"))},
            "/api/v1/admin/queue/{id}/retry": {"post": op("Retry a queue entry now", "admin",
                json!([path_param("id", "Queue message id")]), None, any_json("Recipients rescheduled"))},
            "/api/v1/admin/queue/{id}": {"delete": admin_delete("a queue entry (no DSN)", "id")},
            "/api/v1/openapi.json": {"get": op("This document", "health", json!([]), None, any_json("OpenAPI 3"))},
            "/metrics": {"get": op("Prometheus metrics", "health", json!([]), None,
                ("200", json!({"description": "Prometheus text format"})))},
            "/healthz": {"get": op("Liveness", "health", json!([]), None, any_json("ok"))},
            "/readyz": {"get": op("Readiness: store reachable, listeners up", "health", json!([]), None, any_json("ready"))}
        }
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_exactly_the_routes() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let routes = super::super::routes();
        for (method, path, _) in &routes {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} is served but not documented"
            );
        }
        for (path, ops) in paths {
            for method in ops.as_object().unwrap().keys() {
                assert!(
                    routes.iter().any(|(m, p, _)| m == method && p == path),
                    "{method} {path} is documented but not served"
                );
            }
        }
        assert_eq!(doc["openapi"], "3.0.3");
    }
}
