"""``nncli diagram``: the network as a graph, drawn with graphviz, so anyone can rebuild it.

The lecture's standard for a diagram is that "anyone can unambiguously reconstruct the network"
from it, and that "edges can transmit full tensors". Two views meet it:

- the **layer view** (default): a node per layer with its type, the arguments that define it and
  its parameter count; every edge is labelled with the tensor shape it carries (batch as N). A
  ``Residual`` is a fork, its body, its shortcut (a plain skip edge when it is the identity) and an
  add node; a ``Parallel`` is a fork, its branches side by side and a merge node marked with its
  operation (concat, +, ×, mean, max); a ``Block`` is a framed cluster; a ``Repeat`` is one "xN"
  box unless expanded.
- the **neuron view**: the classical picture of a small MLP, a node per unit and an edge per
  weight, each layer marked with its activation.

Building the graph (:func:`build_diagram`) is apart from writing it (:func:`write_diagram`): the
:class:`Diagram` object gives DOT source through the ``graphviz`` Python package, which needs no
``dot`` binary, so the graph can be tested and scripted (``to_json``) anywhere; only rendering to
svg/png/pdf runs ``dot``.

The package's rooms: ``model`` (Node, Edge, Group, Diagram, DiagramResult), ``layer_view`` and
``neuron_view`` (the two graphs), ``node_text`` (how a layer reads in a label), ``styles`` (shapes
and colours), ``dot`` (DOT source), ``output`` (formats, paths, writing, the missing-``dot`` path)
and ``command`` (:func:`build_diagram`, :func:`draw`).
"""

from nncli.diagram.command import build_diagram, draw
from nncli.diagram.dot import DOT_SIGNATURE, to_digraph
from nncli.diagram.layer_view import REPEAT_CLUSTER_MAX, category, layer_graph
from nncli.diagram.model import Diagram, DiagramResult, Edge, Group, Node
from nncli.diagram.neuron_view import NEURON_MAX_EDGES, NEURON_MAX_NODES, neuron_graph
from nncli.diagram.output import FORMATS, INSTALL_GRAPHVIZ, check_output, resolve_format, write_diagram
from nncli.diagram.styles import SKIP_COLOR, STYLES

__all__ = [
    "DOT_SIGNATURE",
    "FORMATS",
    "INSTALL_GRAPHVIZ",
    "NEURON_MAX_EDGES",
    "NEURON_MAX_NODES",
    "REPEAT_CLUSTER_MAX",
    "SKIP_COLOR",
    "STYLES",
    "Diagram",
    "DiagramResult",
    "Edge",
    "Group",
    "Node",
    "build_diagram",
    "category",
    "check_output",
    "draw",
    "layer_graph",
    "neuron_graph",
    "resolve_format",
    "to_digraph",
    "write_diagram",
]
