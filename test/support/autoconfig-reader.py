"""Reads a mail client setup answer from stdin with Python's own XML parser and prints it as JSON.

`clientconfig`: Thunderbird's clientConfig 1.1, checked as Thunderbird's reader (readFromXML)
checks it: an emailProvider with an id and at least one domain; each server needs a known type,
a hostname, a port in 1..65535, a username, a socketType of plain/SSL/STARTTLS and a known
authentication; at least one usable incoming server and one outgoing (type smtp). A file it
would refuse prints {"error": ...}.
`autodiscover`: Outlook's POX response (responseschema/2006 around outlook/responseschema/2006a):
its Account's Protocol entries, each field as text.
"""
import json
import sys
import xml.etree.ElementTree as ET

SOCKET_TYPES = {"plain", "SSL", "STARTTLS"}
INCOMING_AUTH = {"password-cleartext", "plain", "password-encrypted", "secure", "GSSAPI", "NTLM", "OAuth2"}
OUTGOING_AUTH = INCOMING_AUTH | {"none", "client-IP-address", "smtp-after-pop"}
AUTODISCOVER = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
OUTLOOK = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


class Refused(Exception):
    pass


def text(node, name):
    child = node.find(name)
    if child is None or child.text is None or child.text.strip() == "":
        raise Refused(f"<{node.tag}> lacks <{name}>")
    return child.text.strip()


def first_known(node, name, known):
    for child in node.findall(name):
        if child.text in known:
            return child.text
    raise Refused(f"<{node.tag}> has no usable <{name}>")


def server(node, types, auths):
    if node.get("type") not in types:
        raise Refused(f"<{node.tag}> type {node.get('type')!r}")
    port = int(text(node, "port"))
    if not 1 <= port <= 65535:
        raise Refused(f"port {port}")
    return {
        "type": node.get("type"),
        "hostname": text(node, "hostname"),
        "port": port,
        "socketType": first_known(node, "socketType", SOCKET_TYPES),
        "username": text(node, "username"),
        "authentication": first_known(node, "authentication", auths),
    }


def client_config(root):
    if root.tag != "clientConfig":
        raise Refused(f"root is <{root.tag}>")
    provider = root.find("emailProvider")
    if provider is None or not provider.get("id"):
        raise Refused("no <emailProvider id=...>")
    domains = [d.text for d in provider.findall("domain") if d.text]
    if not domains:
        raise Refused("no <domain>")
    incoming_types = {"pop3", "imap", "nntp", "exchange"}
    incoming = [server(n, incoming_types, INCOMING_AUTH) for n in provider.findall("incomingServer")]
    outgoing = [server(n, {"smtp"}, OUTGOING_AUTH) for n in provider.findall("outgoingServer")]
    if not incoming or not outgoing:
        raise Refused("needs an incoming and an outgoing server")
    return {"id": provider.get("id"), "domains": domains, "incoming": incoming, "outgoing": outgoing}


def autodiscover(root):
    if root.tag != AUTODISCOVER + "Autodiscover":
        raise Refused(f"root is <{root.tag}>")
    account = root.find(f"{OUTLOOK}Response/{OUTLOOK}Account")
    if account is None:
        raise Refused("no Response/Account in the outlook 2006a namespace")
    protocols = [
        {child.tag.replace(OUTLOOK, ""): child.text for child in protocol}
        for protocol in account.findall(OUTLOOK + "Protocol")
    ]
    return {
        "accountType": account.findtext(OUTLOOK + "AccountType"),
        "action": account.findtext(OUTLOOK + "Action"),
        "protocols": protocols,
    }


def main():
    root = ET.fromstring(sys.stdin.buffer.read())
    try:
        result = client_config(root) if sys.argv[1] == "clientconfig" else autodiscover(root)
    except (Refused, ValueError) as refusal:
        result = {"error": str(refusal)}
    json.dump(result, sys.stdout)


main()
