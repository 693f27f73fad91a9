"""structured_data: named signals per language, counted and weighted into a level (`structured_level`)."""

from __future__ import annotations

import re

from curator.labeling.heuristic.facts import Facts, Rx, count
from curator.labeling.heuristic.rules import describe
from curator.labels import STRUCTURED_DATA


def _sig(what, pattern, weight=1.0, kind="use", flags=re.M, needles=None):
    """A signal; `needles` are substrings every match contains, so a file without any of them is skipped
    without running the regex (most files lack most signals)."""
    return what, Rx(pattern, flags, needles), weight, kind


COMMON_SIGNALS = [
    _sig(
        "SQL statements",
        r"\b(?:SELECT\s+[\w*.,\s()]+?\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b",
        needles=("SELECT", "INSERT", "UPDATE", "DELETE"),
    ),
    _sig(
        "JSON Schema / OpenAPI",
        r"\$schema[\"']|\bopenapi\b|\bswagger\b|\btype[\"']?\s*:\s*[\"']object[\"']",
        kind="def",
        needles=("$schema", "openapi", "swagger", "object"),
    ),
    _sig(
        "GraphQL",
        r"\bgql`|\bgraphql\b|^\s*(?:type\s+(?:Query|Mutation)|query\s+\w+\s*[({]|mutation\s+\w+\s*[({])",
        kind="def",
        needles=("gql`", "graphql", "Query", "Mutation", "query", "mutation"),
    ),
    _sig("protobuf/gRPC", r"\bprotobuf\b|\bgrpc\b|\.proto\b", needles=("protobuf", "grpc", ".proto")),
    _sig("JSON content type", r"application/json", needles=("application/json",)),
]

STRUCTURED_SIGNALS = {
    "python": [
        _sig(
            "data model classes (pydantic/marshmallow/ORM/serializers)",
            r"^class \w+\((?:[\w.]*\.)?(?:BaseModel|Schema|Serializer|ModelSerializer|HyperlinkedModelSerializer|Model|"
            r"Document|EmbeddedDocument|TypedDict|SQLModel|DeclarativeBase|Base|Struct|Message|ModelSchema|SQLAlchemySchema)\b",
            2,
            "def",
            needles=("class ",),
        ),
        _sig(
            "schema fields",
            r"\b(?:Column|relationship|ForeignKey|mapped_column)\(|\bmodels\.\w+Field\(|\bfields\.\w+\(|\bserializers\.\w+Field\(|=\s*Field\(",
            1,
            "def",
            needles=("Column(", "relationship(", "ForeignKey(", "mapped_column(", "Field(", "fields."),
        ),
        _sig(
            "dataclasses/namedtuples",
            r"^@(?:dataclasses\.)?dataclass\b|\bnamedtuple\(|^@attr\.s\b|^@attrs?\.define\b",
            0.5,
            "def",
            needles=("dataclass", "namedtuple", "@attr"),
        ),
        _sig(
            "json/yaml/toml/xml (de)serialization",
            r"\b(?:json|simplejson|ujson|orjson|yaml|toml|tomllib|tomli|msgpack|pickle|marshal|plistlib)\.(?:loads?|dumps?|safe_load|safe_dump|load_all)\("
            r"|\bElementTree\b|\betree\.|\bminidom\b|\bxmltodict\b|\bcsv\.(?:reader|writer|DictReader|DictWriter)\b|\bstruct\.(?:pack|unpack)\(",
            needles=(
                "json",
                "yaml",
                "toml",
                "msgpack",
                "pickle",
                "marshal",
                "plistlib",
                "ElementTree",
                "etree.",
                "minidom",
                "xmltodict",
                "csv.",
                "struct.",
            ),
        ),
        _sig(
            "HTTP clients",
            r"\b(?:requests|httpx|session|client)\.(?:get|post|put|patch|delete|request)\(|\burlopen\(|\baiohttp\.ClientSession\b|\.json\(\)",
            needles=(
                ".get(",
                ".post(",
                ".put(",
                ".patch(",
                ".delete(",
                ".request(",
                "urlopen(",
                "aiohttp",
                ".json()",
            ),
        ),
        _sig(
            "HTTP handlers",
            r"@\w+\.(?:route|get|post|put|patch|delete)\(|\bAPIRouter\(|\bBlueprint\(|\bJsonResponse\(|\bjsonify\(|\bResponse\(|\bAPIView\b|\bViewSet\b|\brequest\.(?:json|form|args|data|GET|POST)\b",
            needles=(
                "@",
                "APIRouter(",
                "Blueprint(",
                "Response(",
                "jsonify(",
                "APIView",
                "ViewSet",
                "request.",
            ),
        ),
        _sig(
            "database queries",
            r"\bcursor\.execute|\.execute\(\s*[\"'f]|\.objects\.(?:filter|get|all|create|exclude|update)\(|\bsession\.(?:query|add|commit)\(|\bselect\(\w",
            needles=("execute", "objects.", "session.", "select("),
        ),
        _sig(
            "dataframes io",
            r"\bpd\.read_(?:csv|json|parquet|sql|excel)\(|\.to_(?:csv|json|parquet|dict|sql)\(",
            needles=("pd.read_", ".to_"),
        ),
    ],
    "javascript": [
        _sig("JSON.parse/JSON.stringify", r"\bJSON\.(?:parse|stringify)\(", needles=("JSON.",)),
        _sig(
            "HTTP clients (fetch/axios/ajax)",
            r"\bfetch\(|\baxios(?:\.\w+)?\(|\$\.(?:ajax|getJSON|get|post)\(|\bXMLHttpRequest\b|\bhttp\.(?:get|request)\(|\bsuperagent\b|\bky\.(?:get|post)\(",
            needles=("fetch(", "axios", "$.", "XMLHttpRequest", "http.", "superagent", "ky."),
        ),
        _sig(
            "HTTP handlers",
            r"\b(?:app|router|server)\.(?:get|post|put|patch|delete|route)\(\s*['\"`/]|\bres\.(?:json|send|status)\(|\breq\.(?:body|params|query)\b|@(?:Get|Post|Put|Patch|Delete|Controller)\(",
            needles=("app.", "router.", "server.", "res.", "req.", "@"),
        ),
        _sig(
            "schemas and models (zod/io-ts/mongoose/sequelize/TypeORM/Joi/yup)",
            r"\bz\.(?:object|array|string|number|enum)\(|\bt\.(?:type|interface|partial)\(|\bnew (?:mongoose\.)?Schema\(|\bmongoose\.model\(|"
            r"\bsequelize\.define\(|\bDataTypes\.\w+|@(?:Entity|Column|PrimaryGeneratedColumn|ManyToOne|OneToMany|Field|ObjectType|InputType|ApiProperty|Prop)\(|\bJoi\.\w+\(|\byup\.object\(|\bSimpleSchema\b",
            2,
            "def",
            needles=("z.", "t.", "Schema", "mongoose", "sequelize", "DataTypes", "@", "Joi.", "yup."),
        ),
        _sig(
            "database queries",
            r"\.query\(\s*['\"`]|\bknex\b|\bprisma\.\w+\.(?:find\w*|create|update|delete|upsert)\(|\.(?:findOne|findAll|findById|insertOne|insertMany|updateOne|aggregate)\(",
            needles=(".query(", "knex", "prisma", ".find", ".insert", ".update", ".aggregate"),
        ),
        _sig(
            "yaml/xml/csv",
            r"\byaml\.(?:load|parse|dump|stringify)\(|\bDOMParser\b|\bxml2js\b|\bpapaparse\b|\bcsv-parse\b",
            needles=("yaml.", "DOMParser", "xml2js", "papaparse", "csv-parse"),
        ),
    ],
    "java": [
        _sig(
            "JPA/ORM entities",
            r"@(?:Entity|Table|Column|Id|GeneratedValue|OneToMany|ManyToOne|ManyToMany|OneToOne|JoinColumn|Embeddable|Document|Field)\b",
            1,
            "def",
            needles=("@",),
        ),
        _sig(
            "serialization annotations (Jackson/Gson/JAXB)",
            r"@(?:JsonProperty|JsonIgnore|JsonInclude|JsonFormat|JsonCreator|SerializedName|Expose|XmlElement|XmlRootElement|XmlAttribute)\b",
            1,
            "def",
            needles=("@Json", "@SerializedName", "@Expose", "@Xml"),
        ),
        _sig(
            "Serializable/record data types",
            r"\bimplements\s+(?:java\.io\.)?Serializable\b|^\s*(?:public\s+)?record\s+\w+\(|^@(?:Data|Value|Builder)\b",
            0.5,
            "def",
            needles=("Serializable", "record", "@Data", "@Value", "@Builder"),
        ),
        _sig(
            "JSON libraries (Jackson/Gson/org.json)",
            r"\bObjectMapper\b|\.readValue\(|\.writeValueAsString\(|\bnew Gson\(|\.(?:toJson|fromJson)\(|\bJSONObject\b|\bJSONArray\b|\bJsonObject\b|\bJsonNode\b",
            needles=(
                "ObjectMapper",
                "readValue",
                "writeValueAsString",
                "Gson",
                "toJson",
                "fromJson",
                "JSONObject",
                "JSONArray",
                "JsonObject",
                "JsonNode",
            ),
        ),
        _sig(
            "REST handlers",
            r"@(?:Get|Post|Put|Delete|Patch|Request)Mapping\b|@RestController\b|@Path\(|@Produces\b|@Consumes\b|\bResponseEntity\b|@RequestBody\b|@PathVariable\b",
            needles=(
                "Mapping",
                "@RestController",
                "@Path",
                "@Produces",
                "@Consumes",
                "ResponseEntity",
                "@RequestBody",
                "@PathVariable",
            ),
        ),
        _sig(
            "HTTP clients",
            r"\bHttpClient\b|\bHttpURLConnection\b|\bRestTemplate\b|\bWebClient\b|\bOkHttpClient\b|@(?:GET|POST|PUT|DELETE)\(\"",
            needles=(
                "HttpClient",
                "HttpURLConnection",
                "RestTemplate",
                "WebClient",
                "@GET",
                "@POST",
                "@PUT",
                "@DELETE",
            ),
        ),
        _sig(
            "JDBC/repositories",
            r"\bPreparedStatement\b|\.executeQuery\(|\bResultSet\b|\bJdbcTemplate\b|@Query\(|\b(?:Jpa|Crud|Mongo)Repository<",
            needles=(
                "PreparedStatement",
                "executeQuery",
                "ResultSet",
                "JdbcTemplate",
                "@Query",
                "Repository<",
            ),
        ),
        _sig(
            "XML/CSV parsing",
            r"\bDocumentBuilder\b|\bSAXParser\b|\bXMLStreamReader\b|\bJAXBContext\b|\bCSVParser\b|\bCSVReader\b",
            needles=(
                "DocumentBuilder",
                "SAXParser",
                "XMLStreamReader",
                "JAXBContext",
                "CSVParser",
                "CSVReader",
            ),
        ),
    ],
    "go": [
        _sig(
            "struct tags",
            r"`(?:json|xml|yaml|db|gorm|bson|protobuf|form|mapstructure|toml|sql|validate):\"",
            1,
            "def",
            needles=(':"',),
        ),
        _sig(
            "encoding/json & co",
            r"\b(?:json|xml|yaml|gob|csv|toml|proto|protojson)\.(?:Marshal|Unmarshal|MarshalIndent|NewDecoder|NewEncoder|NewReader|NewWriter)\b",
            needles=("Marshal", "NewDecoder", "NewEncoder", "NewReader", "NewWriter"),
        ),
        _sig(
            "HTTP handlers/clients",
            r"\bhttp\.(?:HandleFunc|Handle|ListenAndServe|NewRequest|Get|Post|NewServeMux)\b|\bhttp\.ResponseWriter\b|\*http\.Request\b|\b(?:gin|echo|fiber)\.Context\b|\.(?:GET|POST|PUT|DELETE|PATCH)\(\s*\"|\.(?:JSON|IndentedJSON|BindJSON|ShouldBindJSON|ShouldBind)\(",
            needles=(
                "http.",
                "Context",
                ".GET(",
                ".POST(",
                ".PUT(",
                ".DELETE(",
                ".PATCH(",
                "JSON(",
                ".ShouldBind(",
            ),
        ),
        _sig(
            "database queries",
            r"\bsql\.(?:Open|DB|Rows|Tx)\b|\.Query(?:Row)?(?:Context)?\(|\.Exec(?:Context)?\(|\bgorm\.\w+",
            needles=("sql.", ".Query", ".Exec", "gorm."),
        ),
        _sig("gRPC services", r"\bgrpc\.\w+|\bpb\.\w+Request\b", 0.5, needles=("grpc.", "pb.")),
    ],
    "rust": [
        _sig(
            "serde derives",
            r"#\[derive\([^)]*\b(?:Serialize|Deserialize)\b",
            2,
            "def",
            needles=("Serialize", "Deserialize"),
        ),
        _sig(
            "serde attributes / ORM tables",
            r"#\[serde\(|\bdiesel::table!|\btable!\s*\{|#\[derive\([^)]*\b(?:Queryable|Insertable|FromRow|Message)\b|#\[prost\(|#\[sea_orm\(",
            1,
            "def",
            needles=(
                "#[serde(",
                "table!",
                "Queryable",
                "Insertable",
                "FromRow",
                "Message",
                "#[prost(",
                "#[sea_orm(",
            ),
        ),
        _sig(
            "serde_json/yaml/toml/csv",
            r"\b(?:serde_json|serde_yaml|toml|bincode|csv|quick_xml|rmp_serde|ron)::",
            needles=("::",),
        ),
        _sig(
            "HTTP (reqwest/hyper/axum/actix/warp/rocket)",
            r"\b(?:reqwest|hyper|axum|actix_web|warp|rocket|tonic)::|#\[(?:get|post|put|delete)\(\"|\bJson<|\.json\(\)",
            needles=("::", "#[get", "#[post", "#[put", "#[delete", "Json<", ".json()"),
        ),
        _sig(
            "database (sqlx/diesel/rusqlite)",
            r"\b(?:sqlx|diesel|rusqlite|postgres|tokio_postgres|mongodb|redis)::|\bsqlx::query",
            needles=("::",),
        ),
    ],
    "shell": [
        _sig("jq/yq", r"\b(?:jq|yq)\b"),
        _sig("HTTP API calls", r"\bcurl\b[^\n]*(?:-X\s*(?:POST|PUT|PATCH|DELETE)|-d\b|--data|-H\s)", 1),
        _sig("database clients", r"\b(?:psql|mysql|sqlite3|mongo|mongosh|redis-cli)\b"),
        _sig("json tools", r"python3? -m json\.tool|\bjson_pp\b"),
    ],
    "sql": [
        _sig(
            "DDL (CREATE TABLE/VIEW/INDEX/TYPE)",
            r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:UNLOGGED\s+|TEMP(?:ORARY)?\s+)?(?:TABLE|VIEW|MATERIALIZED\s+VIEW|INDEX|UNIQUE\s+INDEX|TYPE|SCHEMA|SEQUENCE|DOMAIN)\b",
            2,
            "def",
            re.I,
        ),
        _sig(
            "ALTER TABLE / constraints",
            r"\bALTER\s+TABLE\b|\bPRIMARY\s+KEY\b|\bFOREIGN\s+KEY\b|\bREFERENCES\b",
            1,
            "def",
            re.I,
        ),
        _sig(
            "queries and DML",
            r"\bSELECT\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+|\bDELETE\s+FROM\b|\bJOIN\b",
            0.5,
            "use",
            re.I,
        ),
        _sig("JSON/XML in SQL", r"\bjsonb?\b|->>|\bjson_\w+\(|\bxml\w*\(", 1, "use", re.I),
    ],
}
STRUCTURED_SIGNALS["typescript"] = STRUCTURED_SIGNALS["javascript"] + [
    _sig(
        "TypeScript interfaces/types",
        r"^\s*(?:export\s+)?(?:interface\s+\w+|type\s+\w+\s*=\s*\{)",
        0.5,
        "def",
        needles=("interface", "type"),
    ),
]


def structured_signals(f: Facts) -> list[tuple[str, int, float, str]]:
    found = []
    signals = STRUCTURED_SIGNALS.get(f.language, []) + (COMMON_SIGNALS if f.language != "sql" else [])
    # In SQL, keywords inside string literals are data, not queries: count on the blanked code.
    text = f.code if f.language == "sql" else f.uncommented
    for what, pattern, weight, kind in signals:
        n = count(pattern, text)
        if n:
            found.append((what, n, weight, kind))
    return found


_SQL_QUERY = Rx(
    r"\bSELECT\b[^;]{0,2000}?\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b", re.I
)


_SQL_CREATE_TABLE = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+|UNLOGGED\s+)?(?:TABLE|TYPE|VIEW)\b", re.I
)


@describe(
    "0 with no signal; 3 when definitions are dense (>= 4, >= 0.08 per code line) or all signals are (>= 8, "
    ">= 0.15 per line); 2 when signals are substantial (>= 3 at >= 0.03 per line, or >= 12, or >= 2 "
    "definitions at >= 0.04); else 1. Floors: SQL with queries or DML 2, SQL with 2+ CREATE TABLE/TYPE/VIEW "
    "3, other SQL 1; a SQL schema (config) 3 with tables, else 2; a data file of records or key-value "
    "literals 2"
)
def structured_level(f: Facts, content_type: str) -> tuple[int, list[str]]:
    found = structured_signals(f)
    reasons = [f"structured_data signal: {what} ({n})" for what, n, _, _ in found]
    defs = sum(min(n, 200) * w for _, n, w, k in found if k == "def")
    uses = sum(min(n, 200) * w for _, n, w, k in found if k == "use")
    total = defs + uses
    n = max(len(f.code_lines), 1)
    density, def_density = total / n, defs / n
    if total == 0:
        level = 0
    elif defs >= 4 and def_density >= 0.08 or total >= 8 and density >= 0.15:
        level = 3
    elif total >= 3 and density >= 0.03 or total >= 12 or defs >= 2 and def_density >= 0.04:
        level = 2
    else:
        level = 1
    why = f"weighted signals {total:g} (definitions {defs:g}) over {n} code lines, density {density:.3f}"
    # Floors where the file's kind says more than the counts: SQL is always about tables, and a schema or a
    # dump of rows is data with a shape.
    if f.language == "sql" and f.code_lines:
        # SQL is about tables by nature: a query or DML is significant, a schema is the primary focus.
        tables = len(_SQL_CREATE_TABLE.findall(f.code))
        if level < 3 and tables >= 2:
            level, why = 3, f"SQL schema: {tables} CREATE TABLE/TYPE/VIEW statements"
        elif level < 2 and _SQL_QUERY.search(f.code):
            level, why = 2, "SQL queries/DML over tables (floor 2)"
        elif level < 1:
            level, why = 1, "SQL file (floor 1)"
    if content_type == "data" and level < 2 and (f.language == "sql" or re.search(r'""\s*:', f.code)):
        level, why = 2, "data file of records / key-value literals (floor 2)"
    if content_type == "config" and f.language == "sql" and level < 3:
        if _SQL_CREATE_TABLE.search(f.code) or re.search(r"\bALTER\s+TABLE\b", f.code, re.I):
            level, why = 3, "SQL schema file with table definitions (floor 3)"
        elif level < 2:
            level, why = 2, "SQL DDL file (floor 2)"
    level = max(STRUCTURED_DATA.lo, min(level, STRUCTURED_DATA.hi))
    reasons.append(f"structured_data = {level}: {why}")
    return level, reasons
