//! A real OTLP/gRPC receiver for the export tests: a tonic server of the collector's logs
//! service (the same `opentelemetry-proto` definitions the exporter uses) that keeps every
//! request.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

/// The receiver: every request it was sent.
#[derive(Clone, Default)]
pub struct Receiver(pub Arc<Mutex<Vec<ExportLogsServiceRequest>>>);

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.lock().expect("requests").push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves on `listener` until the runtime ends.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let _ = tonic::transport::Server::builder()
            .add_service(LogsServiceServer::new(self))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    }

    /// Every log record received so far, in order.
    pub fn log_records(&self) -> Vec<LogRecord> {
        self.0
            .lock()
            .expect("requests")
            .iter()
            .flat_map(|r| &r.resource_logs)
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| s.log_records.clone())
            .collect()
    }

    /// The string bodies of every log record received so far (the records' JSON).
    pub fn bodies(&self) -> Vec<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        self.log_records()
            .iter()
            .filter_map(
                |log| match log.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(Value::StringValue(body)) => Some(body.clone()),
                    _ => None,
                },
            )
            .collect()
    }
}
