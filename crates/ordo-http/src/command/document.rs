//! The OpenAPI operation of a command route, built from its [`HttpCommand`]: the
//! aggregate's id and the other path parameters, the command headers, the body's
//! schema, the answer and every status a command can meet (`crate::openapi` then
//! gives each error its problem+json body and headers). And links from each route
//! that creates an aggregate to the routes that take its id, so that a client — or
//! a fuzzer — can follow a created id.

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, ResponsesBuilder, Schema, Type,
};
use utoipa::IntoParams;

use super::{path::template_params, BodyKind, CommandMethod, CommandRoute, HttpAggregate, HttpCommand};

/// Adds `B`'s operation and the schemas it names to `openapi`.
pub(super) fn add<B: HttpCommand>(openapi: &mut OpenApi) {
    let mut schemas = Vec::new();
    if B::BODY != BodyKind::None {
        B::schemas(&mut schemas);
        schemas.push((B::name().into_owned(), B::schema()));
    }
    schemas.push((B::Aggregate::RESULT_SCHEMA.to_owned(), result_schema::<B::Aggregate>().into()));
    let components = openapi.components.get_or_insert_with(Default::default);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    let method = match B::METHOD {
        CommandMethod::Post => HttpMethod::Post,
        CommandMethod::Delete => HttpMethod::Delete,
    };
    openapi.paths.add_path_operation(B::PATH, vec![method], operation::<B>());
}

/// The command routes' operations, added to `openapi`.
pub fn document(openapi: &mut OpenApi, routes: &[CommandRoute]) {
    for route in routes {
        route.document(openapi);
    }
}

fn operation<B: HttpCommand>() -> Operation {
    let aggregate = B::Aggregate::NAME;
    let mut operation = OperationBuilder::new()
        .operation_id(Some(B::OPERATION_ID))
        .summary(Some(B::SUMMARY))
        .tag("commands")
        .parameters(Some(parameters::<B>()));
    operation = match B::BODY {
        BodyKind::None => operation,
        BodyKind::Json | BodyKind::OptionalJson => {
            let required = if B::BODY == BodyKind::Json { Required::True } else { Required::False };
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(B::name()))).build();
            let body = RequestBodyBuilder::new().content("application/json", content).required(Some(required));
            operation.request_body(Some(body.build()))
        }
    };
    let header = |description: &str| {
        HeaderBuilder::new().schema(ObjectBuilder::new().schema_type(Type::String)).description(Some(description))
    };
    let answer = ContentBuilder::new().schema(Some(Ref::from_schema_name(B::Aggregate::RESULT_SCHEMA))).build();
    let mut success = ResponseBuilder::new()
        .description("committed, or the replay of a committed request (Idempotent-Replayed: true)")
        .content("application/json", answer)
        .header("ETag", header("\"<version>\": the stream's version after the command").build());
    let mut statuses = vec![
        (409, format!("refused by a rule of the {aggregate} (rule_violation, …), concurrency_conflict or idempotency_key_in_flight")),
        (412, "wrong_expected_version (If-Match or If-None-Match does not hold)".to_owned()),
        (422, "validation_failed or idempotency_key_reused".to_owned()),
    ];
    let status = if B::CREATES {
        success = success.header("Location", header(&format!("{}/{{id}}", B::PATH)).build());
        201
    } else {
        statuses.push((404, format!("the {aggregate} does not exist (or what the command names)")));
        200
    };
    for &(code, description) in B::RESPONSES {
        statuses.retain(|(c, _)| *c != code);
        statuses.push((code, description.to_owned()));
    }
    let mut responses = ResponsesBuilder::new().response(status.to_string(), success.build());
    for (code, description) in statuses {
        responses = responses.response(code.to_string(), ResponseBuilder::new().description(description).build());
    }
    operation.responses(responses.build()).build()
}

fn parameters<B: HttpCommand>() -> Vec<utoipa::openapi::path::Parameter> {
    let mut parameters = Vec::new();
    if template_params(B::PATH).any(|name| name == B::Aggregate::ID_PARAM) {
        let id = ParameterBuilder::new()
            .name(B::Aggregate::ID_PARAM)
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(format!("The {}'s id", B::Aggregate::NAME)))
            .schema(Some(B::Aggregate::id_schema()));
        parameters.push(id.build());
    }
    parameters.extend(B::path_parameters());
    parameters.extend(crate::openapi::CommandHeaders::into_params(|| None));
    parameters
}

/// `{ID_FIELD, version, position}`.
fn result_schema<A: HttpAggregate>() -> Schema {
    let counter = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .description(Some(description))
    };
    let object = ObjectBuilder::new()
        .property(A::ID_FIELD, A::id_schema())
        .required(A::ID_FIELD)
        .property("version", counter("The stream's version after the command (also the ETag)"))
        .required("version")
        .property("position", counter("The global position of the last event the command appended"))
        .required("position")
        .description(Some(format!("What every command of the {} answers", A::NAME)));
    Schema::Object(object.build())
}

/// Links from each command route to the operations under its path (`/orders` →
/// `/orders/{id}…`, `/stock/{sku}/reservations` → `…/{reservation_id}…`), each
/// parameter taken from the answer (the aggregate's id), the request's path, or the
/// request body's field of that name; an operation with a parameter none of them
/// gives is not linked.
pub fn add_links(openapi: &mut OpenApi, routes: &[CommandRoute]) {
    for route in routes {
        let under = format!("{}/", route.path);
        let fields = (route.body_fields)();
        let mut links = Vec::new();
        for (path, item) in openapi.paths.paths.iter().filter(|(path, _)| path.starts_with(&under)) {
            let sources = template_params(path).map(|name| Some((name, source(route, &fields, name)?)));
            let Some(parameters) = sources.collect::<Option<Vec<_>>>() else { continue };
            let operations = [&item.get, &item.post, &item.delete];
            for id in operations.into_iter().flatten().filter_map(|o| o.operation_id.clone()) {
                // utoipa 5.5 writes `Link::operation_id` as `operation_id`, not as
                // OpenAPI's `operationId`: the field goes in as a flattened extension.
                let operation_id: Extensions = [("operationId", id.clone())].into_iter().collect();
                let mut link = LinkBuilder::new()
                    .extensions(Some(operation_id))
                    .description(format!("{path}, of what the command answered"));
                for (name, source) in &parameters {
                    link = link.parameter(*name, source.clone());
                }
                links.push((id, link.build()));
            }
        }
        let Some(item) = openapi.paths.paths.get_mut(route.path) else { continue };
        let operation = match route.method {
            CommandMethod::Post => item.post.as_mut(),
            CommandMethod::Delete => item.delete.as_mut(),
        };
        let status = if route.creates { "201" } else { "200" };
        let Some(RefOr::T(success)) = operation.and_then(|o| o.responses.responses.get_mut(status)) else { continue };
        for (id, link) in links {
            success.links.insert(id, RefOr::T(link));
        }
    }
}

/// Where a link from `route` takes parameter `name` from.
fn source(route: &CommandRoute, body_fields: &[String], name: &str) -> Option<String> {
    if name == route.id_param {
        Some(format!("$response.body#/{}", route.id_field))
    } else if template_params(route.path).any(|param| param == name) {
        Some(format!("$request.path.{name}"))
    } else {
        body_fields.iter().any(|field| field == name).then(|| format!("$request.body#/{name}"))
    }
}

/// The top-level fields of `B`'s body.
pub(super) fn body_fields<B: HttpCommand>() -> Vec<String> {
    match (B::BODY, B::schema()) {
        (BodyKind::None, _) => Vec::new(),
        (_, RefOr::T(Schema::Object(object))) => object.properties.keys().cloned().collect(),
        _ => Vec::new(),
    }
}
