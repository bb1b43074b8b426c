//! The one client of edgefleet's REST API: sign in, send requests with the bearer token, read
//! answers (`{"error": {code, message, details}}` becomes [`ClientError::Api`]), follow a
//! delivery's live events (Server-Sent Events, read by the `sse` crate, resumed with
//! `Last-Event-ID`). The CLI, the bench and the tests all use it, so none of them parses answers or
//! events its own way.

use std::collections::VecDeque;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub use api_types as types;
pub use reqwest;
pub use sse::Event;

/// An answer of any status, as it came.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    pub text: String,
    pub headers: HeaderMap,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error code of an error answer (`""` otherwise).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The body of a successful answer, or the server's error.
    pub fn into_result(self) -> Result<Value, ClientError> {
        if self.is_success() { Ok(self.body) } else { Err(self.into_error()) }
    }

    /// The server's error, read from an error answer.
    fn into_error(self) -> ClientError {
        let error = &self.body["error"];
        ClientError::Api {
            status: self.status,
            code: error["code"].as_str().unwrap_or("error").to_owned(),
            message: error["message"].as_str().map(str::to_owned).unwrap_or_else(|| self.text.clone()),
            details: error["details"].clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String, details: Value },
    #[error("sign-in answered no token")]
    NoToken,
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    /// The answer was not of the shape the API documents.
    #[error("the answer of {path} is not what the API documents: {source}")]
    Unexpected { path: String, source: serde_json::Error },
}

impl ClientError {
    /// The API error code, when the server answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client of one edgefleet server, signed in or not. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// `base` is the server's address, such as `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> ApiClient {
        ApiClient { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_owned(), token: None }
    }

    /// The same server with this token.
    pub fn with_token(&self, token: &str) -> ApiClient {
        ApiClient { token: Some(token.to_owned()), ..self.clone() }
    }

    /// The same server without credentials.
    pub fn anonymous(&self) -> ApiClient {
        ApiClient { token: None, ..self.clone() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The HTTP client underneath, for requests this client does not shape (tests of raw HTTP).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/v1/auth/login`; answers the signed-in client and the login answer.
    pub async fn login(&self, username: &str, password: &str) -> Result<(ApiClient, Value), ClientError> {
        let answer = self
            .anonymous()
            .send(Method::POST, "/api/v1/auth/login", Some(&json!({"username": username, "password": password})))
            .await?;
        let body = answer.into_result()?;
        let token = body["token"].as_str().ok_or(ClientError::NoToken)?;
        Ok((self.with_token(token), body))
    }

    /// A request with this client's token (if any) and extra headers; the answer whatever its status.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, ClientError> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.answer(request).await
    }

    /// A JSON request; the answer whatever its status.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, ClientError> {
        self.send_with(method, path, body, &[]).await
    }

    /// A request with a body of any type (CSV, bytes); the answer whatever its status.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Answer, ClientError> {
        let request = self.request(method, path).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        self.answer(request).await
    }

    /// A multipart form (plugin uploads); the answer whatever its status.
    pub async fn send_form(&self, path: &str, form: reqwest::multipart::Form) -> Result<Answer, ClientError> {
        self.answer(self.request(Method::POST, path).multipart(form)).await
    }

    /// `GET`, the body of a successful answer or the server's error.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path, None).await?.into_result()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::POST, path, Some(body)).await?.into_result()
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::PUT, path, Some(body)).await?.into_result()
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::PATCH, path, Some(body)).await?.into_result()
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::DELETE, path, None).await?.into_result()
    }

    /// A request with a typed body and a typed answer (`api_types`).
    pub async fn call<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body.map(serde_json::to_value).transpose().map_err(ClientError::Encode)?;
        let value = self.send(method, path, body.as_ref()).await?.into_result()?;
        serde_json::from_value(value).map_err(|source| ClientError::Unexpected { path: path.to_owned(), source })
    }

    /// `GET` with a typed answer.
    pub async fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<Value, T>(Method::GET, path, None).await
    }

    /// Opens a live event stream (`Last-Event-ID` resumes after that event). An error answer is
    /// the server's error.
    pub async fn events(&self, path: &str, last_event_id: Option<&str>) -> Result<EventStream, ClientError> {
        let mut request = self.request(Method::GET, path);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.map_err(|source| self.unreachable(source))?;
        if !response.status().is_success() {
            return Err(self.read(response).await?.into_error());
        }
        Ok(EventStream {
            chunks: Box::pin(response.bytes_stream()),
            parser: sse::Parser::new(),
            ready: VecDeque::new(),
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<Answer, ClientError> {
        let response = request.send().await.map_err(|source| self.unreachable(source))?;
        self.read(response).await
    }

    async fn read(&self, response: reqwest::Response) -> Result<Answer, ClientError> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|source| self.unreachable(source))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, body, text, headers })
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable { server: self.base.clone(), source }
    }
}

/// A live event stream, event by event.
pub struct EventStream {
    chunks: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: sse::Parser,
    ready: VecDeque<Event>,
}

impl EventStream {
    /// The next event; `None` when the server closed the stream, `Some(Err)` when it broke off.
    pub async fn next(&mut self) -> Option<Result<Event, reqwest::Error>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            match self.chunks.next().await? {
                Ok(chunk) => self.ready.extend(self.parser.feed(&chunk)),
                Err(err) => return Some(Err(err)),
            }
        }
    }

    /// The id of the last event read, for `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id()
    }
}
